//! The public area of an RSA key as the SDKs send it (§4.4.1): TPM2B_PUBLIC = `BE16(size) ‖ TPMT_PUBLIC`.
//!
//! TPMT_PUBLIC (TPM 2.0 Part 2 §12.2.4) for RSA: type, nameAlg, objectAttributes, authPolicy (TPM2B),
//! TPMS_RSA_PARMS { symmetric (TPMT_SYM_DEF_OBJECT), scheme (TPMT_RSA_SCHEME), keyBits, exponent },
//! unique (TPM2B_PUBLIC_KEY_RSA, the modulus). Name = `BE16(nameAlg) ‖ H_nameAlg(TPMT_PUBLIC)` (§4.4.5).

use sha2::{Digest, Sha256};

use super::marshal::{tpm2b, Reader};
use super::{alg, TpmError};

/// Key size every SDK template uses (§4.4.1).
pub const RSA_BITS: u16 = 2048;
/// Modulus length in bytes for [`RSA_BITS`].
pub const MODULUS_LEN: usize = 256;
/// Length of a SHA-256 Name: the 2-byte algorithm id and the digest.
pub const NAME_LEN: usize = 34;

/// A symmetric algorithm of a storage key (TPMT_SYM_DEF_OBJECT), e.g. AES / 128 / CFB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymmetricDef {
    pub algorithm: u16,
    pub key_bits: u16,
    pub mode: u16,
}

impl SymmetricDef {
    /// AES-128-CFB, the symmetric algorithm of the EK and SRK templates (§4.4.1).
    pub const AES_128_CFB: Self = Self { algorithm: alg::AES, key_bits: 128, mode: alg::CFB };
}

/// An RSA scheme (TPMT_RSA_SCHEME): the scheme and, for the signing and OAEP schemes, its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RsaScheme {
    pub scheme: u16,
    pub hash: Option<u16>,
}

/// A parsed RSA-2048 / SHA-256 public area; keeps the exact TPMT_PUBLIC bytes it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublic {
    tpmt: Vec<u8>,
    name_alg: u16,
    attributes: u32,
    auth_policy: Vec<u8>,
    symmetric: Option<SymmetricDef>,
    scheme: RsaScheme,
    key_bits: u16,
    exponent: u32,
    modulus: Vec<u8>,
}

impl std::fmt::Debug for RsaPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaPublic")
            .field("attributes", &format_args!("{:#010x}", self.attributes))
            .field("symmetric", &self.symmetric)
            .field("scheme", &self.scheme)
            .field("key_bits", &self.key_bits)
            .field("name", &hex(&self.name()))
            .finish_non_exhaustive()
    }
}

impl RsaPublic {
    /// Parses a TPM2B_PUBLIC (`BE16(size) ‖ TPMT_PUBLIC`); the size must match the bytes that follow exactly.
    pub fn from_tpm2b(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes);
        let declared = usize::from(r.u16("TPM2B_PUBLIC size")?);
        let actual = r.remaining();
        if declared != actual {
            return Err(TpmError::SizeMismatch { what: "TPM2B_PUBLIC", declared, actual });
        }
        Self::from_tpmt(r.bytes(actual, "TPMT_PUBLIC")?)
    }

    /// Parses a TPMT_PUBLIC (no size prefix); every byte must belong to it.
    pub fn from_tpmt(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes);
        let object_type = r.u16("type")?;
        if object_type != alg::RSA {
            return Err(TpmError::Unsupported(format!("type {object_type:#06x} is not RSA ({:#06x})", alg::RSA)));
        }
        let name_alg = r.u16("nameAlg")?;
        if name_alg != alg::SHA256 {
            return Err(TpmError::Unsupported(format!("nameAlg {name_alg:#06x} is not SHA-256 ({:#06x})", alg::SHA256)));
        }
        let attributes = r.u32("objectAttributes")?;
        let auth_policy = r.tpm2b("authPolicy")?.to_vec();
        if !auth_policy.is_empty() && auth_policy.len() != 32 {
            return Err(TpmError::Unsupported(format!("an authPolicy of {} bytes (SHA-256 policies are 32)", auth_policy.len())));
        }
        let symmetric = match r.u16("symmetric.algorithm")? {
            alg::NULL => None,
            algorithm => Some(SymmetricDef { algorithm, key_bits: r.u16("symmetric.keyBits")?, mode: r.u16("symmetric.mode")? }),
        };
        let scheme = match r.u16("scheme")? {
            s @ (alg::NULL | alg::RSAES) => RsaScheme { scheme: s, hash: None },
            s @ (alg::RSASSA | alg::RSAPSS | alg::OAEP) => RsaScheme { scheme: s, hash: Some(r.u16("scheme.hashAlg")?) },
            s => return Err(TpmError::Unsupported(format!("RSA scheme {s:#06x}"))),
        };
        let key_bits = r.u16("keyBits")?;
        if key_bits != RSA_BITS {
            return Err(TpmError::Unsupported(format!("an RSA key of {key_bits} bits")));
        }
        let exponent = r.u32("exponent")?;
        let modulus = r.tpm2b("unique (modulus)")?.to_vec();
        if modulus.len() != MODULUS_LEN {
            return Err(TpmError::Unsupported(format!("a modulus of {} bytes for keyBits {key_bits}", modulus.len())));
        }
        if r.remaining() != 0 {
            return Err(TpmError::Trailing { what: "TPMT_PUBLIC", extra: r.remaining() });
        }
        Ok(Self { tpmt: bytes.to_vec(), name_alg, attributes, auth_policy, symmetric, scheme, key_bits, exponent, modulus })
    }

    /// Always [`alg::RSA`]: other types are refused when parsing.
    pub fn object_type(&self) -> u16 {
        alg::RSA
    }

    pub fn name_alg(&self) -> u16 {
        self.name_alg
    }

    /// TPMA_OBJECT bits (`0x000300B2` for the EK template, `0x00030472` for the SRK, §4.4.1).
    pub fn attributes(&self) -> u32 {
        self.attributes
    }

    pub fn auth_policy(&self) -> &[u8] {
        &self.auth_policy
    }

    /// `None` for TPM_ALG_NULL (a non-storage key).
    pub fn symmetric(&self) -> Option<SymmetricDef> {
        self.symmetric
    }

    pub fn scheme(&self) -> RsaScheme {
        self.scheme
    }

    pub fn key_bits(&self) -> u16 {
        self.key_bits
    }

    /// The public exponent, with the TPM's 0 meaning 65537.
    pub fn exponent(&self) -> u32 {
        if self.exponent == 0 {
            65537
        } else {
            self.exponent
        }
    }

    /// The modulus, big-endian, 256 bytes.
    pub fn modulus(&self) -> &[u8] {
        &self.modulus
    }

    /// The marshalled TPMT_PUBLIC, exactly as received.
    pub fn tpmt_bytes(&self) -> &[u8] {
        &self.tpmt
    }

    /// The TPM2B_PUBLIC (`BE16(size) ‖ TPMT_PUBLIC`), as it goes on the wire.
    pub fn to_tpm2b(&self) -> Vec<u8> {
        tpm2b(&self.tpmt)
    }

    /// `0x000B ‖ SHA-256(TPMT_PUBLIC)`.
    pub fn name(&self) -> [u8; NAME_LEN] {
        sha256_name(&self.tpmt)
    }

    /// The key for RSA-OAEP encryption.
    pub fn rsa_public_key(&self) -> Result<rsa::RsaPublicKey, TpmError> {
        rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(&self.modulus), rsa::BigUint::from(self.exponent()))
            .map_err(|e| TpmError::Rsa(e.to_string()))
    }
}

/// The Name of an object whose nameAlg is SHA-256: `0x000B ‖ SHA-256(TPMT_PUBLIC)`.
pub fn sha256_name(tpmt_public: &[u8]) -> [u8; NAME_LEN] {
    let mut name = [0u8; NAME_LEN];
    let (alg_id, digest) = name.split_at_mut(2);
    alg_id.copy_from_slice(&alg::SHA256.to_be_bytes());
    digest.copy_from_slice(&Sha256::digest(tpmt_public));
    name
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A TPMT_PUBLIC shaped like the EK template of §4.4.1, with a made-up modulus.
    pub(crate) fn ek_like_tpmt(modulus_byte: u8) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&alg::RSA.to_be_bytes());
        t.extend_from_slice(&alg::SHA256.to_be_bytes());
        t.extend_from_slice(&0x0003_00B2u32.to_be_bytes());
        t.extend_from_slice(&32u16.to_be_bytes());
        t.extend_from_slice(&[
            0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7, 0x6e, 0x06,
            0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
        ]);
        for v in [alg::AES, 128, alg::CFB, alg::NULL, 2048] {
            t.extend_from_slice(&v.to_be_bytes());
        }
        t.extend_from_slice(&0u32.to_be_bytes());
        t.extend_from_slice(&256u16.to_be_bytes());
        let mut modulus = vec![modulus_byte; 256];
        modulus[0] |= 0x80;
        t.extend_from_slice(&modulus);
        t
    }

    #[test]
    fn an_ek_shaped_public_area_parses_with_every_field() {
        let tpmt = ek_like_tpmt(0xC3);
        let k = RsaPublic::from_tpm2b(&tpm2b(&tpmt)).expect("valid EK public area");
        assert_eq!(k.object_type(), alg::RSA);
        assert_eq!(k.name_alg(), alg::SHA256);
        assert_eq!(k.attributes(), 0x0003_00B2);
        assert_eq!(k.auth_policy().len(), 32);
        assert_eq!(k.symmetric(), Some(SymmetricDef::AES_128_CFB));
        assert_eq!(k.scheme(), RsaScheme { scheme: alg::NULL, hash: None });
        assert_eq!(k.key_bits(), 2048);
        assert_eq!(k.exponent(), 65537);
        assert_eq!(k.modulus().len(), 256);
        assert_eq!(k.tpmt_bytes(), &tpmt[..]);
        assert_eq!(k.to_tpm2b().len(), tpmt.len() + 2);
        let name = k.name();
        assert_eq!(name[..2], [0x00, 0x0B]);
        assert_eq!(name[2..], Sha256::digest(&tpmt)[..]);
        assert!(k.rsa_public_key().is_ok());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let tpmt = ek_like_tpmt(0x11);
        for n in 0..tpmt.len() {
            assert!(RsaPublic::from_tpmt(&tpmt[..n]).is_err(), "TPMT_PUBLIC cut at {n}");
            let mut b = tpm2b(&tpmt[..n]);
            assert!(RsaPublic::from_tpm2b(&b).is_err(), "TPM2B_PUBLIC cut at {n}");
            b.truncate(n);
            assert!(RsaPublic::from_tpm2b(&b).is_err());
        }
    }

    #[test]
    fn sizes_that_disagree_and_trailing_bytes_are_refused() {
        let tpmt = ek_like_tpmt(0x22);
        let mut long = tpm2b(&tpmt);
        long.push(0);
        assert_eq!(
            RsaPublic::from_tpm2b(&long),
            Err(TpmError::SizeMismatch { what: "TPM2B_PUBLIC", declared: tpmt.len(), actual: tpmt.len() + 1 })
        );
        let mut extra = tpmt.clone();
        extra.push(0);
        assert_eq!(RsaPublic::from_tpm2b(&tpm2b(&extra)), Err(TpmError::Trailing { what: "TPMT_PUBLIC", extra: 1 }));
        assert_eq!(RsaPublic::from_tpm2b(&[]), Err(TpmError::Truncated("TPM2B_PUBLIC size")));
        assert!(RsaPublic::from_tpm2b(&vec![0xFF; 70_000]).is_err());
    }

    #[test]
    fn other_key_types_and_sizes_are_refused_with_the_reason() {
        let tpmt = ek_like_tpmt(0x33);
        let with = |at: usize, bytes: &[u8]| {
            let mut t = tpmt.clone();
            t[at..at + bytes.len()].copy_from_slice(bytes);
            RsaPublic::from_tpmt(&t)
        };
        let err = |r: Result<RsaPublic, TpmError>| match r {
            Err(TpmError::Unsupported(why)) => why,
            other => panic!("expected Unsupported, got {other:?}"),
        };
        assert!(err(with(0, &[0x00, 0x23])).contains("not RSA"));
        assert!(err(with(2, &[0x00, 0x0C])).contains("SHA-256"));
        // keyBits sits after type, nameAlg, attributes, authPolicy (2 + 32), symmetric (6) and scheme (2).
        assert!(err(with(2 + 2 + 4 + 34 + 6 + 2, &[0x10, 0x00])).contains("4096 bits"));
        assert!(err(with(2 + 2 + 4 + 34 + 6, &[0x00, 0x99])).contains("scheme"));
        let mut short_modulus = tpmt[..tpmt.len() - 256 - 2].to_vec();
        short_modulus.extend_from_slice(&tpm2b(&[0x80; 128]));
        assert!(err(RsaPublic::from_tpmt(&short_modulus)).contains("128 bytes"));
    }
}
