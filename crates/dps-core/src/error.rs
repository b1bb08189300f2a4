//! Domain errors: each carries its DPS error code, HTTP status and (for transient ones) a retry-after.
//! Every transport maps a [`DpsError`] in one place (`dps-service`), logging internals and sending only
//! the public message.
//!
//! Codes marked "local" are not evidenced in any SDK or document (§10.1); they follow Azure's
//! `<status> * 1000 + <sub-code>` rule and are documented here and in README.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 400001 (local): the body cannot be parsed.
    BadRequest,
    /// 400004 (local, IoT Hub's ArgumentInvalid): a field or id is invalid, or ids disagree.
    InvalidArgument,
    /// 400011 (local): a register's `csr` cannot be used — not base64 DER PKCS#10, a signature that does not
    /// verify, a CN other than the registration id, a key the credential policy does not allow, or an
    /// api-version before 2025-07-01-preview.
    CertificateRequestInvalid,
    /// 400012 (local): a register sent a `csr`, but its enrollment names no credential policy, or one that does
    /// not exist.
    CredentialPolicyMissing,
    /// 400207: the custom-allocation webhook failed.
    CustomAllocationFailed,
    /// 400208: the webhook named no hub.
    CustomAllocationIotHubNotSpecified,
    /// 400209: the webhook refused us (401).
    CustomAllocationUnauthorizedAccess,
    /// 401002: bad, expired or missing credentials (§1.8).
    Unauthorized,
    /// 401003 (local): the shared access policy lacks the right for this operation.
    Forbidden,
    /// 404201: registration (or a TPM device's enrollment) not found.
    RegistrationNotFound,
    /// 404202 (local): enrollment or enrollment group not found.
    EnrollmentNotFound,
    /// 404203 (local): operation not found.
    OperationNotFound,
    /// 404204 (local): linked hub or other resource not found.
    NotFound,
    /// 403001 (local): a cross-site request to the console port (a foreign `Origin`, a body that is not JSON, a
    /// cross-site fetch), refused before it is routed.
    CrossSite,
    /// 403002 (local; IoT Hub's `IotHubQuotaExceeded`): a count quota of the Azure limits profile (§9).
    QuotaExceeded,
    /// 405001 (local).
    MethodNotAllowed,
    /// 409201 (local): the entity already exists.
    Conflict,
    /// 409203: a registration of the same id is in progress.
    ConcurrentRegistration,
    /// 412002 (IoT Hub's code; DPS's is unverified): ETag mismatch.
    PreconditionFailed,
    /// 413001 (local): the request is larger than the 96 KB message limit (§9).
    PayloadTooLarge,
    /// 415001 (local).
    UnsupportedMediaType,
    /// 429001 (local; IoT Hub's `ThrottlingException` code): throttled — sign-ins, and the Azure limits
    /// profile's rates (`limits.rs`); always with a retry-after.
    Throttled,
    /// 500001 (local): internal error.
    Internal,
    /// 503001 (local): a dependency (store, hub) is unavailable; transient.
    Unavailable,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        (self.code() / 1000) as u16
    }

    pub fn code(self) -> i64 {
        match self {
            Self::BadRequest => 400001,
            Self::InvalidArgument => 400004,
            Self::CertificateRequestInvalid => 400011,
            Self::CredentialPolicyMissing => 400012,
            Self::CustomAllocationFailed => 400207,
            Self::CustomAllocationIotHubNotSpecified => 400208,
            Self::CustomAllocationUnauthorizedAccess => 400209,
            Self::Unauthorized => 401002,
            Self::Forbidden => 401003,
            Self::RegistrationNotFound => 404201,
            Self::EnrollmentNotFound => 404202,
            Self::OperationNotFound => 404203,
            Self::NotFound => 404204,
            Self::CrossSite => 403001,
            Self::QuotaExceeded => 403002,
            Self::MethodNotAllowed => 405001,
            Self::Conflict => 409201,
            Self::ConcurrentRegistration => 409203,
            Self::PreconditionFailed => 412002,
            Self::PayloadTooLarge => 413001,
            Self::UnsupportedMediaType => 415001,
            Self::Throttled => 429001,
            Self::Internal => 500001,
            Self::Unavailable => 503001,
        }
    }

    /// Transient errors carry a retry-after and are retried by every SDK (status ≥ 429, §1.7).
    pub fn is_transient(self) -> bool {
        self.status() >= 429
    }

    pub const ALL: [ErrorKind; 24] = [
        Self::BadRequest,
        Self::InvalidArgument,
        Self::CertificateRequestInvalid,
        Self::CredentialPolicyMissing,
        Self::CustomAllocationFailed,
        Self::CustomAllocationIotHubNotSpecified,
        Self::CustomAllocationUnauthorizedAccess,
        Self::Unauthorized,
        Self::Forbidden,
        Self::RegistrationNotFound,
        Self::EnrollmentNotFound,
        Self::OperationNotFound,
        Self::NotFound,
        Self::CrossSite,
        Self::QuotaExceeded,
        Self::MethodNotAllowed,
        Self::Conflict,
        Self::ConcurrentRegistration,
        Self::PreconditionFailed,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::Throttled,
        Self::Internal,
        Self::Unavailable,
    ];
}

/// A failure with the public message a client sees. Internal details go to the log, never here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpsError {
    pub kind: ErrorKind,
    pub message: String,
    pub retry_after: Option<u32>,
}

/// The longest message an error carries, in characters: messages quote peer input (a parser's error names the
/// value it refused), so every answer and log line built from one stays small whatever the peer sent.
pub const MAX_MESSAGE_CHARS: usize = 1024;

impl DpsError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let retry_after = kind.is_transient().then_some(3);
        let message: String = message.into();
        let message = match dps_proto::truncate_chars(&message, MAX_MESSAGE_CHARS) {
            std::borrow::Cow::Borrowed(_) => message,
            std::borrow::Cow::Owned(cut) => cut,
        };
        Self { kind, message, retry_after }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, m)
    }
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, m)
    }
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, m)
    }
    pub fn status(&self) -> u16 {
        self.kind.status()
    }
    pub fn code(&self) -> i64 {
        self.kind.code()
    }
}

impl fmt::Display for DpsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind.code())
    }
}

impl std::error::Error for DpsError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_quoting_huge_peer_input_are_cut() {
        let peer = "q".repeat(1_000_000);
        let e = DpsError::bad_request(format!("the request body is not valid: invalid type: string \"{peer}\""));
        assert!(e.message.chars().count() < MAX_MESSAGE_CHARS + 40, "{} characters", e.message.len());
        assert!(e.message.starts_with("the request body is not valid") && e.message.ends_with("more bytes]"));
        assert_eq!(DpsError::bad_request("short").message, "short");
    }

    #[test]
    fn codes_carry_their_status_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in ErrorKind::ALL {
            assert!(seen.insert(k.code()), "{k:?}");
            assert_eq!(k.status() as i64, k.code() / 1000);
            assert!((400..600).contains(&k.status()));
            assert_eq!(DpsError::new(k, "x").retry_after.is_some(), k.status() >= 429);
        }
        assert_eq!(ErrorKind::Unauthorized.code(), 401002);
        assert_eq!(ErrorKind::ConcurrentRegistration.code(), 409203);
        assert_eq!(ErrorKind::RegistrationNotFound.code(), 404201);
        assert_eq!(ErrorKind::CustomAllocationIotHubNotSpecified.code(), 400208);
    }
}
