//! SharedAccessSignature tokens (§4.1 device API, §5.1 service API).
//!
//! Every SDK signs `<sr exactly as it appears in the token> + "\n" + <se as it appears>`, but they disagree
//! on how `sr` is percent-encoded. So verification keeps the raw `sr` and `se` strings, recomputes the HMAC
//! over them, and compares in constant time; the decoded `sr` is only used to check the audience.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const PREFIX: &str = "SharedAccessSignature ";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SasError {
    #[error("the authorization header is not a SharedAccessSignature token")]
    NotSas,
    #[error("the SharedAccessSignature token has no '{0}' field")]
    Missing(&'static str),
    #[error("the SharedAccessSignature token's '{0}' field is malformed")]
    Malformed(&'static str),
}

/// A parsed token; fields are kept exactly as sent.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    sr: String,
    sig: String,
    se: String,
    skn: Option<String>,
}

impl std::fmt::Debug for SasToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SasToken").field("sr", &self.sr).field("se", &self.se).field("skn", &self.skn).finish_non_exhaustive()
    }
}

impl SasToken {
    /// Parses `SharedAccessSignature k=v&k=v…` with the pairs in any order. The prefix is matched
    /// case-insensitively; unknown keys are ignored.
    pub fn parse(text: &str) -> Result<Self, SasError> {
        let text = text.trim();
        // `get`, not indexing: a multi-byte character across the prefix's end must be refused, not panic.
        let rest = match (text.get(..PREFIX.len()), text.get(PREFIX.len()..)) {
            (Some(prefix), Some(rest)) if prefix.eq_ignore_ascii_case(PREFIX) => rest,
            _ => return Err(SasError::NotSas),
        };
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for item in rest.trim().split('&') {
            let (k, v) = item.split_once('=').unwrap_or((item, ""));
            match k {
                "sr" => sr = Some(v.to_owned()),
                "sig" => sig = Some(v.to_owned()),
                "se" => se = Some(v.to_owned()),
                "skn" => skn = Some(v.to_owned()),
                _ => {}
            }
        }
        let sr = sr.ok_or(SasError::Missing("sr"))?;
        let sig = sig.ok_or(SasError::Missing("sig"))?;
        let se = se.ok_or(SasError::Missing("se"))?;
        if se.is_empty() || !se.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SasError::Malformed("se"));
        }
        Ok(Self { sr, sig, se, skn })
    }

    /// The audience, percent-decoded (`0ne…/registrations/dev1`, or a host name on the service API).
    pub fn resource(&self) -> Result<String, SasError> {
        percent_decode_str(&self.sr).decode_utf8().map(|s| s.into_owned()).map_err(|_| SasError::Malformed("sr"))
    }

    /// Expiry in seconds since the epoch. Values too large for u64 (never seen, but not ours to trust)
    /// saturate; Node's service SDK sends milliseconds, which simply lie far in the future.
    pub fn expiry(&self) -> u64 {
        self.se.parse::<u64>().unwrap_or(u64::MAX)
    }

    /// The key name (`skn`), if the token has one (the device API ignores it).
    pub fn key_name(&self) -> Option<&str> {
        self.skn.as_deref()
    }

    /// Whether the signature was made with `key` (raw key bytes). Constant time in the signature.
    pub fn verify(&self, key: &[u8]) -> bool {
        let Ok(presented) = percent_decode_str(&self.sig).decode_utf8() else { return false };
        let Ok(presented) = B64.decode(presented.as_bytes()) else { return false };
        let expected = hmac(key, format!("{}\n{}", self.sr, self.se).as_bytes());
        presented.len() == expected.len() && bool::from(presented.ct_eq(&expected))
    }
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// HMAC-SHA256 of `msg` under `key`, base64 — the primitive behind signatures and derived keys.
pub fn hmac_base64(key: &[u8], msg: &[u8]) -> String {
    B64.encode(hmac(key, msg))
}

/// Signs `sr` (as it will appear in the token) and `se`; returns the base64 signature, not URL-encoded.
pub fn sign(key: &[u8], sr_as_sent: &str, se: u64) -> String {
    hmac_base64(key, format!("{sr_as_sent}\n{se}").as_bytes())
}

/// Builds a complete token the way .NET and Python do (`sr` percent-encoded with `%2F`).
pub fn build_token(key: &[u8], resource: &str, se: u64, skn: Option<&str>) -> String {
    match build_token_signed_by(resource, se, skn, |msg| Ok::<_, std::convert::Infallible>(hmac(key, msg))) {
        Ok(token) => token,
        Err(never) => match never {},
    }
}

/// [`build_token`] with the HMAC computed elsewhere — by a TPM holding the key (§4.4.3 step 6): `hmac_sha256`
/// gets the bytes to sign (`sr` as sent + `"\n"` + `se`) and returns the raw 32-byte HMAC.
pub fn build_token_signed_by<E>(
    resource: &str,
    se: u64,
    skn: Option<&str>,
    hmac_sha256: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<String, E> {
    let sr = utf8_percent_encode(resource, NON_ALPHANUMERIC).to_string();
    let mac = hmac_sha256(format!("{sr}\n{se}").as_bytes())?;
    let sig = utf8_percent_encode(&B64.encode(mac), NON_ALPHANUMERIC).to_string();
    Ok(match skn {
        Some(n) => format!("{PREFIX}sr={sr}&sig={sig}&se={se}&skn={n}"),
        None => format!("{PREFIX}sr={sr}&sig={sig}&se={se}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_across_the_prefix_end_is_not_a_token_and_no_panic() {
        let cut = PREFIX.len() - 1;
        let text = format!("{}é sr=a&sig=b&se=1", &PREFIX[..cut]);
        assert!(matches!(SasToken::parse(&text), Err(SasError::NotSas)));
        assert!(matches!(SasToken::parse("€"), Err(SasError::NotSas)));
    }

    #[test]
    fn a_character_across_the_end_of_the_prefix_is_not_a_token() {
        // dps-fuzz corpus/sas_token/crash-prefix-char-boundary: U+FFFD (3 bytes) spanning byte 22 panicked.
        let text = String::from_utf8_lossy(b"Shared&sig=%\xe0\xe0\xe0\xe0999999999999999999");
        assert!(matches!(SasToken::parse(&text), Err(SasError::NotSas)));
        assert!(matches!(SasToken::parse("SharedAccessSignature\u{e9}sr=a&sig=b&se=1"), Err(SasError::NotSas)));
    }

    fn key() -> Vec<u8> {
        (0u8..32).collect()
    }

    // §4.1 test vectors.
    #[test]
    fn signatures_match_the_reference_vectors() {
        assert_eq!(sign(&key(), "0ne0001A2B3%2Fregistrations%2Fdev1", 1735689600), "c6v11l32JqAHj2RLcgKlmsN70OidVpEQUPzRxxI0ABk=");
        assert_eq!(sign(&key(), "0ne0001A2B3/registrations/dev1", 1735689600), "R/FRYvZI0wJRSxMbFey4Pp706H3o9QumaNdrmcqD754=");
    }

    #[test]
    fn tokens_of_every_sdk_shape_verify() {
        let tokens = [
            // .NET / Python: %2F, Python without skn
            "SharedAccessSignature sr=0ne0001A2B3%2Fregistrations%2Fdev1&sig=c6v11l32JqAHj2RLcgKlmsN70OidVpEQUPzRxxI0ABk%3D&se=1735689600&skn=registration",
            "SharedAccessSignature sr=0ne0001A2B3%2Fregistrations%2Fdev1&sig=c6v11l32JqAHj2RLcgKlmsN70OidVpEQUPzRxxI0ABk%3D&se=1735689600",
            // Node / Java: raw sr, any order, Java's empty skn
            "SharedAccessSignature sr=0ne0001A2B3/registrations/dev1&sig=R%2FFRYvZI0wJRSxMbFey4Pp706H3o9QumaNdrmcqD754%3D&skn=registration&se=1735689600",
            "SharedAccessSignature sig=R%2fFRYvZI0wJRSxMbFey4Pp706H3o9QumaNdrmcqD754%3d&se=1735689600&skn=&sr=0ne0001A2B3/registrations/dev1",
        ];
        for t in tokens {
            let tok = SasToken::parse(t).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert!(tok.verify(&key()), "{t}");
            assert_eq!(tok.resource().as_deref(), Ok("0ne0001A2B3/registrations/dev1"));
            assert_eq!(tok.expiry(), 1735689600);
        }
    }

    #[test]
    fn a_wrong_key_or_altered_field_fails() {
        let t =
            "SharedAccessSignature sr=0ne0001A2B3%2Fregistrations%2Fdev1&sig=c6v11l32JqAHj2RLcgKlmsN70OidVpEQUPzRxxI0ABk%3D&se=1735689600";
        let tok = SasToken::parse(t).expect("parses");
        assert!(!tok.verify(&[0u8; 32]));
        let later = SasToken::parse(&t.replace("1735689600", "1735689601")).expect("parses");
        assert!(!later.verify(&key()));
        let other = SasToken::parse(&t.replace("dev1", "dev2")).expect("parses");
        assert!(!other.verify(&key()));
    }

    #[test]
    fn malformed_tokens_are_refused_with_a_reason() {
        assert_eq!(SasToken::parse("Bearer x"), Err(SasError::NotSas));
        assert_eq!(SasToken::parse("SharedAccessSignature sig=a&se=1"), Err(SasError::Missing("sr")));
        assert_eq!(SasToken::parse("SharedAccessSignature sr=a&se=1"), Err(SasError::Missing("sig")));
        assert_eq!(SasToken::parse("SharedAccessSignature sr=a&sig=b"), Err(SasError::Missing("se")));
        assert_eq!(SasToken::parse("SharedAccessSignature sr=a&sig=b&se=-1"), Err(SasError::Malformed("se")));
        let tok = SasToken::parse("SharedAccessSignature sr=a&sig=%%%&se=1").expect("parses");
        assert!(!tok.verify(&key()));
    }

    #[test]
    fn huge_expiries_do_not_overflow() {
        let tok = SasToken::parse("SharedAccessSignature sr=h&sig=x&se=99999999999999999999999").expect("parses");
        assert_eq!(tok.expiry(), u64::MAX);
    }

    #[test]
    fn built_tokens_verify() {
        let t = build_token(&key(), "0ne0001A2B3/registrations/dev1", 1735689600, Some("registration"));
        assert!(t.contains("sr=0ne0001A2B3%2Fregistrations%2Fdev1"));
        assert!(SasToken::parse(&t).map(|t| t.verify(&key())).unwrap_or(false));
    }

    #[test]
    fn an_external_signer_gets_sr_and_se_and_its_errors_pass_through() {
        let mut seen = Vec::new();
        let t = build_token_signed_by("0ne0001A2B3/registrations/dev1", 1735689600, None, |m| {
            seen = m.to_vec();
            Ok::<_, ()>(hmac(&key(), m))
        });
        assert_eq!(seen, b"0ne0001A2B3%2Fregistrations%2Fdev1\n1735689600");
        assert_eq!(t.as_deref(), Ok(build_token(&key(), "0ne0001A2B3/registrations/dev1", 1735689600, None).as_str()));
        assert_eq!(build_token_signed_by("r", 1, None, |_| Err("no TPM")), Err("no TPM"));
    }
}
