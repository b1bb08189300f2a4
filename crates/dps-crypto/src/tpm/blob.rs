//! The `authenticationKey` blob (§4.4.4–§4.4.5): an HMAC key K wrapped so that only the TPM holding the EK
//! (credential protection, TPM 2.0 Part 1 §24) and the SRK (duplication, Part 1 §23) can import it.
//!
//! Six TPM2B items, concatenated: (1) TPM2B_ID_OBJECT carrying the inner wrap key W, bound to the SRK's Name;
//! (2) its seed, RSA-OAEP(EK, "IDENTITY\0"); (3) TPM2B_PRIVATE, the duplicate of the HMAC key (inner wrap W,
//! outer wrap to the SRK); (4) its seed, RSA-OAEP(SRK, "DUPLICATE\0"); (5) TPM2B_PUBLIC of the HMAC key;
//! (6) AES-128-CFB(W) of the "URI data". The device runs ActivateCredential, Import and Load on it (§4.4.3).

use aes::Aes128;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use rand::{CryptoRng, RngCore};
use rsa::Oaep;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::kdf::kdfa;
use super::marshal::{put_tpm2b, tpm2b, Reader};
use super::public::{sha256_name, RsaPublic, SymmetricDef};
use super::{alg, TpmError};

/// Most blob bytes one AMQP SASL challenge may carry (§3.3: frames ≤ 512 bytes before `max-frame-size`).
/// (The split itself is `dps_proto::amqp::tpm_blob_challenges`.)
pub const MAX_SASL_SEGMENT: usize = 470;

/// Object attributes of the imported HMAC key: sign | userWithAuth (fixedTPM, fixedParent and
/// sensitiveDataOrigin must be clear for Import, §4.4.5).
pub const HMAC_KEY_ATTRIBUTES: u32 = 0x0004_0040;

/// The six items of a blob, each without its 2-byte size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobParts<'a> {
    /// (1) TPM2B_ID_OBJECT contents: `credentialBlob` for ActivateCredential.
    pub credential_blob: &'a [u8],
    /// (2) TPM2B_ENCRYPTED_SECRET contents: `secret` for ActivateCredential.
    pub encrypted_secret: &'a [u8],
    /// (3) TPM2B_PRIVATE contents: `duplicate` for Import.
    pub duplicate: &'a [u8],
    /// (4) TPM2B_ENCRYPTED_SECRET contents: `inSymSeed` for Import.
    pub encrypted_seed: &'a [u8],
    /// (5) TPMT_PUBLIC of the HMAC key: `objectPublic` for Import and Load.
    pub public: &'a [u8],
    /// (6) The encrypted "URI data" (no SDK interprets it).
    pub encrypted_uri: &'a [u8],
}

impl<'a> BlobParts<'a> {
    /// Splits a blob into its six items; sizes must add up to the blob's length exactly.
    pub fn parse(blob: &'a [u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(blob);
        let parts = Self {
            credential_blob: r.tpm2b("item 1 (TPM2B_ID_OBJECT)")?,
            encrypted_secret: r.tpm2b("item 2 (TPM2B_ENCRYPTED_SECRET)")?,
            duplicate: r.tpm2b("item 3 (TPM2B_PRIVATE)")?,
            encrypted_seed: r.tpm2b("item 4 (TPM2B_ENCRYPTED_SECRET)")?,
            public: r.tpm2b("item 5 (TPM2B_PUBLIC)")?,
            encrypted_uri: r.tpm2b("item 6 (TPM2B_DATA)")?,
        };
        if r.remaining() != 0 {
            return Err(TpmError::Trailing { what: "the authenticationKey blob", extra: r.remaining() });
        }
        Ok(parts)
    }
}

/// Builds a blob carrying `hmac_key` (K, 16 to 64 bytes) for the device whose EK and SRK are given, with
/// `uri_data` (1 to 64 bytes, e.g. the hub host name) as item 6. Uses the thread's CSPRNG.
pub fn build_authentication_key(ek: &RsaPublic, srk: &RsaPublic, hmac_key: &[u8], uri_data: &[u8]) -> Result<Vec<u8>, TpmError> {
    build_authentication_key_with_rng(&mut rand::thread_rng(), ek, srk, hmac_key, uri_data)
}

/// [`build_authentication_key`] with the random source given (W, the obfuscation value and both seeds).
pub fn build_authentication_key_with_rng<R: RngCore + CryptoRng>(
    rng: &mut R,
    ek: &RsaPublic,
    srk: &RsaPublic,
    hmac_key: &[u8],
    uri_data: &[u8],
) -> Result<Vec<u8>, TpmError> {
    if !(16..=64).contains(&hmac_key.len()) {
        return Err(TpmError::HmacKeyLength(hmac_key.len()));
    }
    if !(1..=64).contains(&uri_data.len()) {
        return Err(TpmError::UriDataLength(uri_data.len()));
    }
    for (role, key) in [("EK", ek), ("SRK", srk)] {
        if key.symmetric() != Some(SymmetricDef::AES_128_CFB) {
            return Err(TpmError::Unsupported(format!(
                "the {role}'s symmetric algorithm is {:?}; the blob needs a storage key with AES-128-CFB",
                key.symmetric()
            )));
        }
    }
    let random = |rng: &mut R, n: usize| {
        let mut b = Zeroizing::new(vec![0u8; n]);
        rng.fill_bytes(&mut b);
        b
    };

    // 1. The HMAC key object: public area (bound to K by unique = H(s ‖ K)) and sensitive area.
    let obfuscation = random(rng, 32);
    let mut binding = Sha256::new();
    binding.update(&*obfuscation);
    binding.update(hmac_key);
    let public = hmac_key_public(&binding.finalize());
    let name = sha256_name(&public);
    let mut sensitive = Zeroizing::new(Vec::with_capacity(8 + 32 + hmac_key.len()));
    sensitive.extend_from_slice(&alg::KEYEDHASH.to_be_bytes());
    put_tpm2b(&mut sensitive, &[]);
    put_tpm2b(&mut sensitive, &obfuscation);
    put_tpm2b(&mut sensitive, hmac_key);
    let sensitive = Zeroizing::new(tpm2b(&sensitive));

    // 2. Inner wrapper with W: integrity H(TPM2B_SENSITIVE ‖ Name) in front, then AES-128-CFB(W).
    let w = random(rng, 16);
    let mut inner = Zeroizing::new(tpm2b(&Sha256::new().chain_update(&*sensitive).chain_update(name).finalize()));
    inner.extend_from_slice(&sensitive);
    let mut inner_enc = inner.to_vec();
    aes128_cfb(&w, &mut inner_enc);

    // 3. Outer wrapper to the SRK (duplication): seed_d, its OAEP under the SRK, STORAGE and INTEGRITY keys.
    let seed_d = random(rng, 32);
    let enc_seed_d = oaep(rng, srk, &seed_d, "DUPLICATE\0")?;
    let mut outer_enc = inner_enc;
    aes128_cfb(&kdfa(&seed_d, "STORAGE", &name, &[], 128), &mut outer_enc);
    let mut duplicate = tpm2b(&hmac_sha256(&kdfa(&seed_d, "INTEGRITY", &[], &[], 256), &[&outer_enc, &name]));
    duplicate.extend_from_slice(&outer_enc);

    // 4. W as a credential bound to the SRK's Name, for the EK (MakeCredential).
    let srk_name = srk.name();
    let seed_c = random(rng, 32);
    let enc_seed_c = oaep(rng, ek, &seed_c, "IDENTITY\0")?;
    let mut enc_identity = tpm2b(&w);
    aes128_cfb(&kdfa(&seed_c, "STORAGE", &srk_name, &[], 128), &mut enc_identity);
    let mut credential = tpm2b(&hmac_sha256(&kdfa(&seed_c, "INTEGRITY", &[], &[], 256), &[&enc_identity, &srk_name]));
    credential.extend_from_slice(&enc_identity);

    // 5. URI data under W.
    let mut enc_uri = uri_data.to_vec();
    aes128_cfb(&w, &mut enc_uri);

    let mut blob = Vec::with_capacity(800);
    for item in [&credential, &enc_seed_c, &duplicate, &enc_seed_d, &public, &enc_uri] {
        put_tpm2b(&mut blob, item);
    }
    Ok(blob)
}

/// TPMT_PUBLIC of a KEYEDHASH HMAC-SHA256 signing key with `unique` = the given digest (48 bytes).
fn hmac_key_public(unique: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(48);
    p.extend_from_slice(&alg::KEYEDHASH.to_be_bytes());
    p.extend_from_slice(&alg::SHA256.to_be_bytes());
    p.extend_from_slice(&HMAC_KEY_ATTRIBUTES.to_be_bytes());
    put_tpm2b(&mut p, &[]); // authPolicy
    p.extend_from_slice(&alg::HMAC.to_be_bytes());
    p.extend_from_slice(&alg::SHA256.to_be_bytes());
    put_tpm2b(&mut p, unique);
    p
}

fn aes128_cfb(key: &[u8], buf: &mut [u8]) {
    // Keys come from `random(16)` or `kdfa(.., 128)`: always 16 bytes.
    if let Ok(c) = cfb_mode::Encryptor::<Aes128>::new_from_slices(key, &[0u8; 16]) {
        c.encrypt(buf);
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return Vec::new() };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn oaep<R: RngCore + CryptoRng>(rng: &mut R, key: &RsaPublic, seed: &[u8], label: &str) -> Result<Vec<u8>, TpmError> {
    key.rsa_public_key()?.encrypt(rng, Oaep::new_with_label::<Sha256, _>(label), seed).map_err(|e| TpmError::Rsa(e.to_string()))
}

/// Standard base64 with padding, as `authenticationKey` appears in JSON (§4.4.4).
pub fn to_base64(blob: &[u8]) -> String {
    B64.encode(blob)
}

/// Decodes a base64 `authenticationKey` (whitespace around it is ignored).
pub fn from_base64(text: &str) -> Result<Vec<u8>, TpmError> {
    B64.decode(text.trim()).map_err(|_| TpmError::NotBase64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::public::tests::ek_like_tpmt;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// Two fixed RSA-2048 keys (primes from `openssl genrsa 2048`): generating keys in a debug build takes seconds.
    const PRIMES: [[&str; 2]; 2] = [
        [
            "eba988622631727c06dca1ff5ddd6500ac7bf7d4621f267ac6d75a38d42a467b7865c094f9d929e3b6db804640ef07ab8b6bd2a440dc0f7e443d62740d5c6eb0faf88dd5d4adcf354086f98f36af6b1917ca1f5771f5b230c25ef1e4a91a531e372aea3917ff0cd706b0666c912e893fbeea5048e20226900d9785faf1376d69",
            "de75b75da3fefd7ec226d362e8d0df606c8183953caac2cb0b3e1d017ee56f279e185dcf1ffaebbae527be84d5d5d475f7a43851b97cfb19bf94c69b6f093abcaba574013e0c13a68e1e7c51c920952dd79a04e34654193ba0d457df7aee2bf501d395470458fdcd279b3035316a127841a28ad766f7d59d5c7bbd57373eef0b",
        ],
        [
            "c81ae3c9dddddb885c647295e8d994e51683c2f9c65aa96413856bc8f43293a204526fd283bc05542d93efd45ea3ee19d8b2561c5e0e3bd9106f4e9a11b4232e2363f28fa7d87427dfeb80cbcf6515c96fd32b25c4269e8ed9a68ed1ddb1a64100d09974fca5a93bf6d70f4a3a5e288abbe99993a3a526921dcb214321ca5035",
            "c16c05871442c21b9a53d924383e9e9e56793f4736a2c615cdb51c3f51ccae158128d7314521c26509a77056f12c5336c89f71b6820a2b4eb5ae9eb891074cc2056b58bc84f0f1d9e1a8c5ce14370cd0f98cb7eb5c2ce7323638e556b3f991ca65d9f25f918bd1191c08c698926b9d8a57335b1c203bafbb4ee8d84bc4b77953",
        ],
    ];

    /// A real RSA-2048 key (OAEP needs one) in an EK-shaped public area: 0 plays the EK, 1 the SRK.
    fn storage_key(which: usize) -> (RsaPublic, rsa::RsaPrivateKey) {
        use rsa::traits::PublicKeyParts;
        use rsa::BigUint;
        let prime = |hex: &str| BigUint::parse_bytes(hex.as_bytes(), 16).expect("hex prime");
        let [p, q] = PRIMES[which];
        let private = rsa::RsaPrivateKey::from_p_q(prime(p), prime(q), BigUint::from(65537u32)).expect("RSA key from primes");
        let mut tpmt = ek_like_tpmt(0);
        let at = tpmt.len() - 256;
        tpmt[at..].copy_from_slice(&private.n().to_bytes_be());
        (RsaPublic::from_tpmt(&tpmt).expect("storage key public area"), private)
    }

    fn aes128_cfb_decrypt(key: &[u8], buf: &mut [u8]) {
        cfb_mode::Decryptor::<Aes128>::new_from_slices(key, &[0u8; 16]).expect("16-byte key").decrypt(buf);
    }

    /// Undoes the blob with the private keys, checking every integrity value on the way, the way the TPM's
    /// ActivateCredential and Import do; returns (W, K). (swtpm itself runs it in dps-device's tests.)
    fn software_activate(blob: &[u8], ek: &rsa::RsaPrivateKey, srk: &rsa::RsaPrivateKey, srk_name: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let p = BlobParts::parse(blob).expect("six items");
        let seed_c = ek.decrypt(Oaep::new_with_label::<Sha256, _>("IDENTITY\0"), p.encrypted_secret).expect("EK OAEP");
        let mut r = Reader::new(p.credential_blob);
        let integrity = r.tpm2b("integrity").expect("integrity");
        let mut identity = r.bytes(r.remaining(), "identity").expect("identity").to_vec();
        assert_eq!(integrity, hmac_sha256(&kdfa(&seed_c, "INTEGRITY", &[], &[], 256), &[&identity, srk_name]));
        aes128_cfb_decrypt(&kdfa(&seed_c, "STORAGE", srk_name, &[], 128), &mut identity);
        let w = Reader::new(&identity).tpm2b("W").expect("W").to_vec();

        let seed_d = srk.decrypt(Oaep::new_with_label::<Sha256, _>("DUPLICATE\0"), p.encrypted_seed).expect("SRK OAEP");
        let name = sha256_name(p.public);
        let mut r = Reader::new(p.duplicate);
        let integrity = r.tpm2b("outer integrity").expect("outer integrity");
        let mut inner = r.bytes(r.remaining(), "outer").expect("outer").to_vec();
        assert_eq!(integrity, hmac_sha256(&kdfa(&seed_d, "INTEGRITY", &[], &[], 256), &[&inner, &name]));
        aes128_cfb_decrypt(&kdfa(&seed_d, "STORAGE", &name, &[], 128), &mut inner);
        aes128_cfb_decrypt(&w, &mut inner);
        let mut r = Reader::new(&inner);
        let digest = r.tpm2b("inner integrity").expect("inner integrity");
        let sensitive = r.bytes(r.remaining(), "sensitive").expect("sensitive");
        assert_eq!(digest, &Sha256::new().chain_update(sensitive).chain_update(name).finalize()[..]);
        let mut r = Reader::new(Reader::new(sensitive).tpm2b("TPM2B_SENSITIVE").expect("TPM2B_SENSITIVE"));
        assert_eq!(r.u16("sensitiveType").expect("type"), alg::KEYEDHASH);
        assert_eq!(r.tpm2b("authValue").expect("authValue"), b"");
        let s = r.tpm2b("seedValue").expect("seedValue");
        let k = r.tpm2b("sensitive").expect("K").to_vec();
        assert_eq!(r.remaining(), 0);
        assert_eq!(p.public[p.public.len() - 32..], Sha256::new().chain_update(s).chain_update(&k).finalize()[..], "unique = H(s ‖ K)");
        (w, k)
    }

    #[test]
    fn items_have_the_sizes_of_the_layout_table() {
        let ((ek, _), (srk, _)) = (storage_key(0), storage_key(1));
        let mut rng = StdRng::seed_from_u64(3);
        for (k, dup) in [(16usize, 126usize), (32, 142), (64, 174)] {
            let blob = build_authentication_key_with_rng(&mut rng, &ek, &srk, &vec![9u8; k], b"hub.example").expect("blob");
            let p = BlobParts::parse(&blob).expect("six items");
            assert_eq!(p.credential_blob.len(), 52);
            assert_eq!(p.encrypted_secret.len(), 256);
            assert_eq!(p.duplicate.len(), dup, "TPM2B_PRIVATE for a {k}-byte key");
            assert_eq!(p.encrypted_seed.len(), 256);
            assert_eq!(p.public.len(), 48);
            assert_eq!(p.encrypted_uri.len(), 11);
            assert_eq!(blob.len(), 12 + 52 + 256 + dup + 256 + 48 + 11);
            assert_eq!(p.public[..8], [0x00, 0x08, 0x00, 0x0B, 0x00, 0x04, 0x00, 0x40]);
            assert!(blob.len() <= 2 * MAX_SASL_SEGMENT);
        }
    }

    #[test]
    fn the_private_keys_recover_w_and_k_with_every_integrity_check_passing() {
        let ((ek, ek_private), (srk, srk_private)) = (storage_key(0), storage_key(1));
        for k in [vec![1u8; 16], vec![2u8; 32], vec![3u8; 64]] {
            let blob = build_authentication_key(&ek, &srk, &k, b"hub.example").expect("blob");
            let (w, recovered) = software_activate(&blob, &ek_private, &srk_private, &srk.name());
            assert_eq!(recovered, k);
            let mut uri = BlobParts::parse(&blob).expect("six items").encrypted_uri.to_vec();
            aes128_cfb_decrypt(&w, &mut uri);
            assert_eq!(uri, b"hub.example");
        }
    }

    #[test]
    fn bad_inputs_are_refused() {
        let ((ek, _), (srk, _)) = (storage_key(0), storage_key(1));
        assert_eq!(build_authentication_key(&ek, &srk, &[0; 15], b"u"), Err(TpmError::HmacKeyLength(15)));
        assert_eq!(build_authentication_key(&ek, &srk, &[0; 65], b"u"), Err(TpmError::HmacKeyLength(65)));
        assert_eq!(build_authentication_key(&ek, &srk, &[0; 32], b""), Err(TpmError::UriDataLength(0)));
        assert_eq!(build_authentication_key(&ek, &srk, &[0; 32], &[0; 65]), Err(TpmError::UriDataLength(65)));
        let mut no_sym = ek_like_tpmt(0x44);
        no_sym.splice(42..48, alg::NULL.to_be_bytes());
        let signing = RsaPublic::from_tpmt(&no_sym).expect("a key without symmetric algorithm");
        assert!(matches!(build_authentication_key(&signing, &srk, &[0; 32], b"u"), Err(TpmError::Unsupported(_))));
    }

    #[test]
    fn parsing_a_damaged_blob_fails_cleanly() {
        let blob = build_authentication_key(&storage_key(0).0, &storage_key(1).0, &[2u8; 32], b"hub").expect("blob");
        for n in 0..blob.len() {
            assert!(BlobParts::parse(&blob[..n]).is_err(), "cut at {n}");
        }
        let mut long = blob.clone();
        long.push(0);
        assert_eq!(BlobParts::parse(&long), Err(TpmError::Trailing { what: "the authenticationKey blob", extra: 1 }));
        assert_eq!(from_base64(&format!(" {}\n", to_base64(&blob))), Ok(blob));
        assert_eq!(from_base64("not base64!"), Err(TpmError::NotBase64));
    }
}
