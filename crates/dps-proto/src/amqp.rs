//! The AMQP binding's strings and small byte layouts as pure functions (§3): link addresses, the request and
//! response property names, the SASL PLAIN credentials and the control bytes of the `TPM` SASL mechanism.

use percent_encoding::percent_decode_str;

/// Application property naming the request (§3.4).
pub const OPERATION_TYPE: &str = "iotdps-operation-type";
/// Application property carrying the operation id of a status request.
pub const OPERATION_ID: &str = "iotdps-operation-id";
/// Application property a register request may carry (Node sends it, .NET `false`, C and Java omit it).
pub const FORCE_REGISTRATION: &str = "iotdps-forceRegistration";
/// `iotdps-operation-type` of a register request.
pub const REGISTER: &str = "iotdps-register";
/// `iotdps-operation-type` of an operation-status request.
pub const GET_OPERATION_STATUS: &str = "iotdps-get-operationstatus";
/// Both spellings go on every in-progress answer and in a rejection's `info` (§0.8: C/Node/Java read the
/// first, .NET the second).
pub const RETRY_AFTER_NAMES: [&str; 2] = ["retry-after", "Retry-After"];
/// Link attach property with the device's api-version.
pub const API_VERSION_PROPERTY: &str = "com.microsoft:api-version";
/// Link attach property with the device SDK's user agent.
pub const CLIENT_VERSION_PROPERTY: &str = "com.microsoft:client-version";
/// The SASL mechanisms offered (§3.1: Java checks that the one it wants is offered).
pub const SASL_MECHANISMS: [&str; 2] = ["TPM", "PLAIN"];

/// A request a device sends on its sender link (§3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmqpRequest {
    Register { force_registration: bool },
    OperationStatus { operation_id: String },
}

/// Whom a link address or a SASL identity names: `{idScope}/registrations/{registrationId}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationAddress {
    pub id_scope: String,
    pub registration_id: String,
}

impl RegistrationAddress {
    /// The same device, compared as DPS compares ids (case-insensitively, §0.14).
    pub fn same_device(&self, other: &Self) -> bool {
        self.id_scope.eq_ignore_ascii_case(&other.id_scope) && self.registration_id.eq_ignore_ascii_case(&other.registration_id)
    }
}

/// Parses a link address (§3.2): an optional `amqps://host[:port]` (or `amqp://`, `wss://`) prefix and leading
/// `/` are dropped, then `{idScope}/registrations/{registrationId}` must remain (percent-decoded).
pub fn parse_address(address: &str) -> Option<RegistrationAddress> {
    let rest = match address.split_once("://") {
        Some((_, after_scheme)) => after_scheme.split_once('/').map_or("", |(_, path)| path),
        None => address,
    };
    let rest = rest.trim_start_matches('/');
    let (scope, id) = rest.split_once("/registrations/")?;
    let id = id.trim_end_matches('/');
    if scope.is_empty() || scope.contains('/') || id.is_empty() || id.contains('/') {
        return None;
    }
    let decode = |s: &str| percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned());
    Some(RegistrationAddress { id_scope: decode(scope)?, registration_id: decode(id)? })
}

/// SASL PLAIN's initial response `authzid \0 authcid \0 password` (RFC 4616), as DPS uses it (§3.1):
/// authcid = `{idScope}/registrations/{registrationId}`, password = the SAS token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    pub identity: RegistrationAddress,
    pub password: String,
}

/// Parses a PLAIN initial response; `None` when it is not three NUL-separated UTF-8 fields with a DPS authcid.
pub fn parse_plain(response: &[u8]) -> Option<PlainCredentials> {
    let mut fields = response.split(|b| *b == 0);
    let (_authzid, authcid, password) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() {
        return None;
    }
    let identity = parse_address(std::str::from_utf8(authcid).ok()?)?;
    Some(PlainCredentials { identity, password: std::str::from_utf8(password).ok()?.to_owned() })
}

/// The `TPM` mechanism's `sasl-init` payload: `0x00 ‖ idScope ‖ 0x00 ‖ registrationId ‖ 0x00 ‖ EK` (§3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmInit {
    pub identity: RegistrationAddress,
    /// The raw TPM2B_PUBLIC of the endorsement key.
    pub endorsement_key: Vec<u8>,
}

/// Parses the `TPM` init payload. The EK is binary and may contain zero bytes: only the first three
/// separators count.
pub fn parse_tpm_init(payload: &[u8]) -> Option<TpmInit> {
    let rest = payload.strip_prefix(&[0u8])?;
    let mut parts = rest.splitn(3, |b| *b == 0);
    let (scope, id, ek) = (parts.next()?, parts.next()?, parts.next()?);
    let text = |b: &[u8]| std::str::from_utf8(b).ok().filter(|s| !s.is_empty()).map(str::to_owned);
    if ek.is_empty() {
        return None;
    }
    Some(TpmInit { identity: RegistrationAddress { id_scope: text(scope)?, registration_id: text(id)? }, endorsement_key: ek.to_vec() })
}

/// Control byte of a segmented TPM SASL payload: bit 7 = a segment, bit 6 = the last one, bits 0–1 = its
/// sequence number (§3.3).
pub const TPM_SEGMENT: u8 = 0x80;
/// Bit 6 of the control byte: the last segment.
pub const TPM_LAST_SEGMENT: u8 = 0x40;
/// Largest blob segment in one challenge: SASL frames precede the frame-size negotiation, so each stays
/// within AMQP's 512-byte minimum (§3.3).
pub const TPM_MAX_SEGMENT: usize = 470;

/// The two challenges carrying the authentication-key blob: `0x80 ‖ first part` and `0xC1 ‖ the rest`
/// (Java accepts exactly these two control bytes). `None` when the blob does not fit in two segments.
pub fn tpm_blob_challenges(blob: &[u8]) -> Option<[Vec<u8>; 2]> {
    if blob.len() < 2 || blob.len() > 2 * TPM_MAX_SEGMENT {
        return None;
    }
    let (first, second) = blob.split_at(blob.len().div_ceil(2));
    let mut a = Vec::with_capacity(first.len() + 1);
    a.push(TPM_SEGMENT);
    a.extend_from_slice(first);
    let mut b = Vec::with_capacity(second.len() + 1);
    b.push(TPM_SEGMENT | TPM_LAST_SEGMENT | 1);
    b.extend_from_slice(second);
    Some([a, b])
}

/// A client's TPM SASL response without its control byte; `None` for an empty response.
pub fn tpm_response_data(response: &[u8]) -> Option<&[u8]> {
    response.split_first().map(|(_, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised_as_every_sdk_spells_them() {
        let want = RegistrationAddress { id_scope: "0ne0001A2B3".into(), registration_id: "dev-1".into() };
        for a in [
            "0ne0001A2B3/registrations/dev-1",
            "/0ne0001A2B3/registrations/dev-1",
            "amqps://dps.example:5671/0ne0001A2B3/registrations/dev-1",
            "amqps://127.0.0.1/0ne0001A2B3/registrations/dev%2D1",
        ] {
            assert_eq!(parse_address(a).as_ref(), Some(&want), "{a}");
        }
        for bad in ["", "0ne/registrations/", "/registrations/x", "0ne/devices/x", "0ne/registrations/a/b", "amqps://host"] {
            assert_eq!(parse_address(bad), None, "{bad}");
        }
    }

    #[test]
    fn plain_credentials_are_three_fields() {
        let c = parse_plain(b"\x000ne0001A2B3/registrations/dev1\0SharedAccessSignature sr=x").expect("valid");
        assert_eq!(c.identity.registration_id, "dev1");
        assert_eq!(c.password, "SharedAccessSignature sr=x");
        assert_eq!(parse_plain(b"only-one-field"), None);
        assert_eq!(parse_plain(b"\0not-an-address\0pw"), None);
        assert_eq!(parse_plain(b"\x000ne/registrations/d\0pw\0extra"), None);
        assert_eq!(parse_plain(b"\x000ne/registrations/d\0\xff"), None);
    }

    #[test]
    fn tpm_init_keeps_zero_bytes_inside_the_ek() {
        let init = parse_tpm_init(b"\x000ne0001A2B3\0dev1\0\x01\x3a\0\x01\0\x0b").expect("valid");
        assert_eq!(init.identity.registration_id, "dev1");
        assert_eq!(init.endorsement_key, b"\x01\x3a\0\x01\0\x0b");
        assert_eq!(parse_tpm_init(b"0ne\0dev\0ek"), None, "no leading zero byte");
        assert_eq!(parse_tpm_init(b"\x000ne\0dev\0"), None, "no EK");
        assert_eq!(parse_tpm_init(b"\x00\0dev\0ek"), None, "no scope");
    }

    #[test]
    fn a_blob_goes_out_in_exactly_two_segments() {
        let blob: Vec<u8> = (0..=255u8).cycle().take(800).collect();
        let [a, b] = tpm_blob_challenges(&blob).expect("fits");
        assert_eq!((a[0], b[0]), (0x80, 0xC1));
        assert!(a.len() <= TPM_MAX_SEGMENT + 1 && b.len() <= TPM_MAX_SEGMENT + 1);
        assert_eq!([&a[1..], &b[1..]].concat(), blob);
        assert!(tpm_blob_challenges(&vec![0; 941]).is_none());
        assert_eq!(tpm_response_data(b"\0SharedAccessSignature x"), Some(&b"SharedAccessSignature x"[..]));
        assert_eq!(tpm_response_data(b""), None);
    }
}
