//! KDFa with HMAC-SHA-256 (TPM 2.0 Part 1 §11.4.10.2, counter mode of NIST SP 800-108), as used by
//! credential protection and duplication (§4.4.5).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `KDFa(SHA-256, key, label, contextU, contextV, bits)`: the concatenation over i = 1, 2, … of
/// `HMAC-SHA256(key, BE32(i) ‖ label ‖ 0x00 ‖ contextU ‖ contextV ‖ BE32(bits))`, cut to `ceil(bits / 8)` bytes
/// (when `bits` is not a multiple of 8 the unused high bits of the first byte are cleared, as the TPM does).
///
/// `label` is given without its terminating zero (`"STORAGE"`, `"INTEGRITY"`); the one `0x00` is added here.
/// The contexts are raw bytes (Names without a size prefix), empty when absent.
pub fn kdfa(key: &[u8], label: &str, context_u: &[u8], context_v: &[u8], bits: u32) -> Vec<u8> {
    let len = usize::try_from(bits.div_ceil(8)).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(len);
    let mut counter: u32 = 0;
    while out.len() < len {
        counter = counter.wrapping_add(1);
        // HMAC takes keys of any length, so this never fails.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { break };
        mac.update(&counter.to_be_bytes());
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        out.extend_from_slice(&mac.finalize().into_bytes());
    }
    out.truncate(len);
    let partial = bits % 8;
    if partial != 0 {
        if let Some(first) = out.first_mut() {
            *first &= 0xFF >> (8 - partial);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SHA-256 KDFa self-test vector of the TCG reference implementation (`KdfTestData.h`, also in libtpms,
    /// i.e. in swtpm): key, label "KDFSELFTESTLABEL", both contexts, 160 bits.
    #[test]
    fn matches_the_tpm_self_test_vector() {
        let key = [0x27, 0x1F, 0xA0, 0x8B, 0xBD, 0xC5, 0x06, 0x0E, 0xC3, 0xDF, 0xA9, 0x28, 0xFF, 0x9B, 0x73, 0x12, 0x3A, 0x12, 0xDA, 0x0C];
        let u = [0xCE, 0x24, 0x4F, 0x39, 0x5D, 0xCA, 0x73, 0x91];
        let v = [0xDA, 0x50, 0x40, 0x31, 0xDD, 0xF1, 0x2E, 0x83];
        let expected =
            [0xbb, 0x02, 0x59, 0xe1, 0xc8, 0xba, 0x60, 0x7e, 0x6a, 0x2c, 0xd7, 0x04, 0xb6, 0x9a, 0x90, 0x2e, 0x9a, 0xde, 0x84, 0xc4];
        assert_eq!(kdfa(&key, "KDFSELFTESTLABEL", &u, &v, 160), expected);
    }

    #[test]
    fn longer_outputs_use_more_counter_blocks() {
        let key = [7u8; 32];
        let out = kdfa(&key, "STORAGE", b"name", b"", 520);
        assert_eq!(out.len(), 65);
        // Block 2 is HMAC(key, BE32(2) ‖ …) with the same bit count.
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(&[0, 0, 0, 2]);
        mac.update(b"STORAGE\0name");
        mac.update(&520u32.to_be_bytes());
        assert_eq!(out[32..64], mac.finalize().into_bytes()[..]);
        assert_eq!(kdfa(&key, "STORAGE", b"name", b"", 128).len(), 16);
        assert_ne!(kdfa(&key, "STORAGE", b"name", b"", 128)[..], kdfa(&key, "STORAGE", b"name", b"", 256)[..16]);
        assert_eq!(kdfa(&key, "STORAGE", b"", b"", 3)[0] & 0xF8, 0);
    }
}
