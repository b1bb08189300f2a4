//! The 8-byte protocol headers that open an AMQP connection and, after SASL, the AMQP layer (AMQP 1.0
//! §2.2, §5.3.1): `AMQP 0 1 0 0` (plain AMQP — X.509 devices send it right after TLS, §3.1) and
//! `AMQP 3 1 0 0` (SASL — symmetric-key and TPM devices).

use tokio::io::{AsyncRead, AsyncReadExt};

pub const AMQP: [u8; 8] = *b"AMQP\x00\x01\x00\x00";
pub const SASL: [u8; 8] = *b"AMQP\x03\x01\x00\x00";

/// What a client's protocol header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    Amqp,
    Sasl,
    /// Anything else (the TLS-upgrade header, another version, garbage): the server answers with the header
    /// it supports and closes (AMQP 1.0 §2.2).
    Unsupported([u8; 8]),
}

impl Header {
    pub fn of(bytes: [u8; 8]) -> Self {
        match bytes {
            AMQP => Header::Amqp,
            SASL => Header::Sasl,
            other => Header::Unsupported(other),
        }
    }
}

/// Reads one protocol header.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<[u8; 8]> {
    let mut h = [0u8; 8];
    stream.read_exact(&mut h).await?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_apart() {
        assert_eq!(Header::of(AMQP), Header::Amqp);
        assert_eq!(Header::of(SASL), Header::Sasl);
        assert!(matches!(Header::of(*b"AMQP\x02\x01\x00\x00"), Header::Unsupported(_)));
        assert!(matches!(Header::of(*b"GET / HT"), Header::Unsupported(_)));
    }
}
