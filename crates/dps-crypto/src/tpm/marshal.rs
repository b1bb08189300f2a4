//! Big-endian TPM marshalling: a bounds-checked reader over peer bytes and the few writers the blob needs.

use super::TpmError;

/// Reads TPM structures front to back; every read checks the remaining length.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TpmError> {
        let (head, tail) = self.rest.split_at_checked(n).ok_or(TpmError::Truncated(what))?;
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], TpmError> {
        let (head, tail) = self.rest.split_first_chunk::<N>().ok_or(TpmError::Truncated(what))?;
        self.rest = tail;
        Ok(*head)
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, TpmError> {
        self.array(what).map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, TpmError> {
        self.array(what).map(u32::from_be_bytes)
    }

    /// A TPM2B: a 2-byte size, then that many bytes.
    pub(crate) fn tpm2b(&mut self, what: &'static str) -> Result<&'a [u8], TpmError> {
        let n = self.u16(what)?;
        self.bytes(usize::from(n), what)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }
}

/// Appends `BE16(len) ‖ bytes`. Callers only pass buffers built here, all far below 64 KiB.
pub(crate) fn put_tpm2b(out: &mut Vec<u8>, bytes: &[u8]) {
    debug_assert!(bytes.len() <= usize::from(u16::MAX));
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// `BE16(len) ‖ bytes` as a new buffer.
pub(crate) fn tpm2b(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 2);
    put_tpm2b(&mut out, bytes);
    out
}
