//! Attestation: who is this device, and which enrollment applies (§4, §7.1).
//!
//! Symmetric key: the SAS token is checked for audience and expiry, then verified against the individual
//! enrollment with this registration id (primary, then secondary key); without one, against the key each
//! symmetric-key group derives for this id (§4.2). X.509 and TPM enrollments are stored already; their
//! device-side attestation answers a clear 401 until it lands.

use dps_crypto::{decode_key, derive_device_key, SasToken, Secret};
use dps_proto::{AttestationType, EnrollmentGroup, IdScope, IndividualEnrollment, RegistrationId};

use crate::error::DpsError;
use crate::model::EnrollmentRef;
use crate::ports::EnrollmentStore;
use crate::Clock;

/// Tokens that expired less than this many seconds ago are still accepted (device clocks drift).
pub const CLOCK_SKEW_SECS: i64 = 30;

/// What a device presented besides its registration id.
#[derive(Debug, Clone)]
pub enum DeviceCredentials {
    /// A `SharedAccessSignature …` token (HTTP `Authorization`, MQTT password, AMQP SASL).
    Sas(String),
    /// Nothing (TPM's first request, or an X.509 device whose certificate the TLS layer hands over).
    None,
}

/// The enrollment a device matched.
#[derive(Debug, Clone)]
pub enum Matched {
    Individual(Box<IndividualEnrollment>),
    Group(Box<EnrollmentGroup>),
}

impl Matched {
    pub fn reference(&self) -> EnrollmentRef {
        match self {
            Self::Individual(e) => EnrollmentRef::Individual(e.registration_id.clone()),
            Self::Group(g) => EnrollmentRef::Group(g.enrollment_group_id.clone()),
        }
    }
}

/// A device that proved who it is.
#[derive(Debug, Clone)]
pub struct Attested {
    pub matched: Matched,
    pub attestation: AttestationType,
    /// The keys the device holds (individual keys, or the keys derived from the group's).
    pub device_keys: Option<(Secret, Secret)>,
}

fn keys_of(kind: &str, id: &str, primary: Option<&String>, secondary: Option<&String>) -> Result<(Secret, Secret), DpsError> {
    match (primary, secondary) {
        (Some(p), Some(s)) => Ok((Secret::new(p.clone()), Secret::new(s.clone()))),
        _ => Err(DpsError::internal(format!("{kind} '{id}' has no symmetric keys stored"))),
    }
}

/// Checks the token's audience and expiry (§4.1 steps 3–4).
fn check_token(token: &SasToken, scope: &IdScope, reg: &RegistrationId, clock: &dyn Clock) -> Result<(), DpsError> {
    let expected = format!("{}/registrations/{}", scope.as_str(), reg.as_str());
    let resource = token.resource().map_err(|e| DpsError::unauthorized(format!("the SAS token is malformed: {e}")))?;
    if !resource.eq_ignore_ascii_case(&expected) {
        return Err(DpsError::unauthorized(format!("the SAS token was issued for '{resource}', not for '{expected}'")));
    }
    let now = clock.now().timestamp();
    let se = token.expiry();
    if se < u64::try_from(now - CLOCK_SKEW_SECS).unwrap_or(0) {
        return Err(DpsError::unauthorized(format!("the SAS token expired at {se} (now {now})")));
    }
    Ok(())
}

/// Finds and checks the enrollment of a device presenting `creds`.
pub async fn attest(
    store: &dyn EnrollmentStore,
    clock: &dyn Clock,
    scope: &IdScope,
    reg: &RegistrationId,
    creds: &DeviceCredentials,
    presents_tpm: bool,
) -> Result<Attested, DpsError> {
    let token = match creds {
        DeviceCredentials::Sas(t) => {
            SasToken::parse(t).map_err(|e| DpsError::unauthorized(format!("invalid SharedAccessSignature: {e}")))?
        }
        DeviceCredentials::None if presents_tpm => {
            return Err(DpsError::unauthorized("TPM attestation is not available in this version of the service; use symmetric keys"))
        }
        DeviceCredentials::None => {
            return Err(DpsError::unauthorized(
                "no credentials: this version attests devices by symmetric key (a SharedAccessSignature in the Authorization header or the MQTT password); X.509 attestation is not available yet",
            ))
        }
    };
    check_token(&token, scope, reg, clock)?;
    let backend = |e| DpsError::internal(format!("enrollment look-up failed: {e}"));

    if let Some(e) = store.get_enrollment(reg.as_str()).await.map_err(backend)? {
        let Some(sk) = e.attestation.symmetric_key.as_ref().filter(|_| e.attestation.kind == AttestationType::SymmetricKey) else {
            return Err(DpsError::unauthorized(format!(
                "the enrollment of '{reg}' uses {} attestation, not a symmetric key",
                e.attestation.kind.as_str()
            )));
        };
        let keys = keys_of("enrollment", reg.as_str(), sk.primary_key.as_ref(), sk.secondary_key.as_ref())?;
        let ok = [&keys.0, &keys.1].iter().any(|k| decode_key(k.expose()).map(|b| token.verify(&b)).unwrap_or(false));
        if !ok {
            return Err(DpsError::unauthorized(format!(
                "the SAS token of '{reg}' is not signed with the enrollment's primary or secondary key"
            )));
        }
        return Ok(Attested {
            matched: Matched::Individual(Box::new(e)),
            attestation: AttestationType::SymmetricKey,
            device_keys: Some(keys),
        });
    }

    for g in store.symmetric_key_groups().await.map_err(backend)? {
        let Some(sk) = g.attestation.symmetric_key.as_ref() else { continue };
        let (Some(gp), Some(gs)) = (sk.primary_key.as_ref(), sk.secondary_key.as_ref()) else { continue };
        let (Ok(p), Ok(s)) = (derive_device_key(gp, reg.as_str()), derive_device_key(gs, reg.as_str())) else { continue };
        let ok = [&p, &s].iter().any(|k| decode_key(k).map(|b| token.verify(&b)).unwrap_or(false));
        if ok {
            return Ok(Attested {
                matched: Matched::Group(Box::new(g)),
                attestation: AttestationType::SymmetricKey,
                device_keys: Some((Secret::new(p), Secret::new(s))),
            });
        }
    }
    Err(DpsError::unauthorized(format!(
        "no enrollment accepts '{reg}': there is no individual enrollment for it and no symmetric-key group's derived key verifies its token"
    )))
}
