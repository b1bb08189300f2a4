//! TPM attestation (§4.4.3), without a TPM: the cryptography is `dps_crypto::tpm`'s.
//!
//! 1. **Challenge** — a device presents its registration id, EK and SRK; its individual enrollment must be a
//!    TPM enrollment with that EK. A fresh HMAC key K1 is wrapped for the device's TPM (the authentication
//!    key blob) and kept, sealed, in the store with an expiry: a restart between challenge and answer
//!    strands nobody.
//! 2. **Answer** — the device's SAS token, signed in its TPM with K1, is verified like a symmetric key's
//!    (§4.1). The first register that answers claims the challenge (single use); only that operation's polls
//!    may use it afterwards.
//! 3. **Hub key** — an assigned TPM device gets a new key K2 (its hub identity's key) wrapped the same way in
//!    `registrationState.tpm.authenticationKey`; every registration issues a new one.

use dps_crypto::tpm::{build_authentication_key, decode_ek, RsaPublic};
use dps_crypto::{decode_key, generate_key, SasToken, Secret};
use dps_proto::{AttestationType, IndividualEnrollment, RegistrationId};

use crate::attestation::{Attested, Matched};
use crate::error::DpsError;
use crate::ports::{EnrollmentStore, TpmChallenge, TpmChallengeStore};
use crate::Clock;

/// How long a device has to answer its challenge (and to poll with the token that answered it).
pub const CHALLENGE_LIFETIME: chrono::Duration = chrono::Duration::minutes(15);

/// The `keyName` a TPM device signs its tokens with over HTTPS (§1.10: the C SDK needs one).
pub const KEY_NAME: &str = "registration";

fn backend(what: &'static str) -> impl Fn(crate::ports::StoreError) -> DpsError {
    move |e| DpsError::internal(format!("{what}: {e}"))
}

fn public(bytes: &[u8], what: &str) -> Result<RsaPublic, DpsError> {
    RsaPublic::from_tpm2b(bytes).map_err(|e| DpsError::invalid(format!("the {what} is not an RSA-2048 TPM2B_PUBLIC: {e}")))
}

/// The TPM enrollment of `reg`, or why there is none.
async fn enrollment(store: &dyn EnrollmentStore, reg: &RegistrationId) -> Result<IndividualEnrollment, DpsError> {
    let e = store.get_enrollment(reg.as_str()).await.map_err(backend("enrollment look-up failed"))?.ok_or_else(|| {
        DpsError::unauthorized(format!("no individual enrollment for '{reg}': TPM devices need one (groups cannot use TPM)"))
    })?;
    if e.attestation.kind != AttestationType::Tpm {
        return Err(DpsError::unauthorized(format!("the enrollment of '{reg}' uses {} attestation, not TPM", e.attestation.kind.as_str())));
    }
    Ok(e)
}

/// What a TPM device presents in its first register: its EK and SRK (TPM2B_PUBLIC).
#[derive(Debug, Clone, Copy)]
pub struct PresentedKeys<'a> {
    pub endorsement_key: &'a [u8],
    pub storage_root_key: &'a [u8],
}

/// Step 1: checks the EK against the enrollment, stores a new challenge and returns its blob. The RSA
/// wrapping runs under the CPU budget (`cpu.rs`): this request is not authenticated yet.
pub async fn challenge(
    enrollments: &dyn EnrollmentStore,
    challenges: &dyn TpmChallengeStore,
    clock: &dyn Clock,
    cpu: &crate::cpu::CpuBudget,
    reg: &RegistrationId,
    presented: PresentedKeys<'_>,
) -> Result<Vec<u8>, DpsError> {
    let PresentedKeys { endorsement_key, storage_root_key } = presented;
    let e = enrollment(enrollments, reg).await?;
    let ek = public(endorsement_key, "endorsement key")?;
    let srk = public(storage_root_key, "storage root key")?;
    let enrolled = e.attestation.tpm.as_ref().and_then(|t| t.endorsement_key.as_deref()).unwrap_or_default();
    let enrolled =
        decode_ek(enrolled).map_err(|err| DpsError::internal(format!("the enrollment of '{reg}' holds an unusable EK: {err}")))?;
    if enrolled.tpmt_bytes() != ek.tpmt_bytes() {
        return Err(DpsError::unauthorized(format!("the endorsement key presented by '{reg}' does not match its enrollment's")));
    }
    let k1 = generate_key();
    let (key, uri) = (k1.clone(), reg.as_str().as_bytes().to_vec());
    let blob = cpu.run("TPM challenge", move || wrap(&ek, &srk, &key, &uri)).await??;
    challenges
        .put_tpm_challenge(&TpmChallenge {
            registration_id: reg.as_str().to_owned(),
            key: Secret::new(k1),
            expires: clock.now() + CHALLENGE_LIFETIME,
            operation_id: None,
            endorsement_key: endorsement_key.to_vec(),
            storage_root_key: storage_root_key.to_vec(),
        })
        .await
        .map_err(backend("could not store the TPM challenge"))?;
    Ok(blob)
}

/// Wraps the base64 key `key` for the TPM holding `ek` and `srk`; `uri` becomes the blob's item 6.
fn wrap(ek: &RsaPublic, srk: &RsaPublic, key: &str, uri: &[u8]) -> Result<Vec<u8>, DpsError> {
    let raw = decode_key(key).map_err(|e| DpsError::internal(format!("a generated key does not decode: {e}")))?;
    let uri = uri.get(..uri.len().clamp(1, 64)).filter(|u| !u.is_empty()).unwrap_or(b"dps");
    build_authentication_key(ek, srk, &raw, uri).map_err(|e| DpsError::internal(format!("cannot build the TPM authentication key: {e}")))
}

/// Step 2: a token from a TPM enrollment's device, verified with the key of its challenge.
pub async fn attest(
    challenges: &dyn TpmChallengeStore,
    clock: &dyn Clock,
    e: IndividualEnrollment,
    token: &SasToken,
) -> Result<Attested, DpsError> {
    let reg = e.registration_id.clone();
    let c = challenges.get_tpm_challenge(&reg).await.map_err(backend("TPM challenge look-up failed"))?.ok_or_else(|| {
        DpsError::unauthorized(format!(
            "no TPM challenge is pending for '{reg}': register first without a token, presenting the EK and SRK (the tpm object)"
        ))
    })?;
    if c.expires < clock.now() {
        return Err(DpsError::unauthorized(format!("the TPM challenge of '{reg}' expired; register again to get a new one")));
    }
    let key =
        decode_key(c.key.expose()).map_err(|err| DpsError::internal(format!("the stored TPM challenge key does not decode: {err}")))?;
    if !token.verify(&key) {
        return Err(DpsError::unauthorized(format!(
            "the SAS token of '{reg}' is not signed with the key of its TPM challenge (the device's TPM did not activate it)"
        )));
    }
    Ok(Attested {
        matched: Matched::Individual(Box::new(e)),
        attestation: AttestationType::Tpm,
        device_keys: None,
        x509: None,
        tpm: Some(c),
    })
}

/// Step 3: a new hub key K2 (primary, secondary) and its blob for the device's TPM.
pub fn hub_key(endorsement_key: &[u8], storage_root_key: &[u8], hub: &str) -> Result<((Secret, Secret), String), DpsError> {
    let (ek, srk) = (public(endorsement_key, "endorsement key")?, public(storage_root_key, "storage root key")?);
    let (primary, secondary) = (generate_key(), generate_key());
    let blob = wrap(&ek, &srk, &primary, hub.as_bytes())?;
    Ok(((Secret::new(primary), Secret::new(secondary)), dps_crypto::tpm::blob::to_base64(&blob)))
}
