//! Attestation: who is this device, and which enrollment applies (§4, §7.1).
//!
//! Symmetric key: the SAS token is checked for audience and expiry, then verified against the individual
//! enrollment with this registration id (primary, then secondary key); without one, against the key each
//! symmetric-key group derives for this id (§4.2).
//!
//! X.509 (§4.3): the leaf's CN is the registration id; the individual enrollment for it decides first (the
//! leaf must be its primary or secondary certificate, or chain to its verified CA); otherwise the enrollment
//! group whose certificate is nearest the leaf in the presented chain (first intermediate, …, root) decides.
//! The first match decides, enabled or not — that is how one device of a group is blocked.
//!
//! TPM (§4.4): the token of a TPM enrollment's device is verified with the key of its challenge (`tpm.rs`).

use std::sync::Arc;

use dps_crypto::sas::hmac_base64;
use dps_crypto::{decode_key, SasToken, Secret};
use dps_proto::{AttestationType, EnrollmentGroup, IdScope, IndividualEnrollment, RegistrationId, X509Attestation, X509RegistrationResult};

use crate::error::DpsError;
use crate::model::EnrollmentRef;
use crate::ports::{CertificateStore, EnrollmentStore, TpmChallenge, TpmChallengeStore};
use crate::x509::chain::{check_leaf, verify_chain, ChainError};
use crate::x509::{certificate_info, common_name, decode_certificate};
use crate::Clock;

/// Tokens that expired less than this many seconds ago are still accepted (device clocks drift).
pub const CLOCK_SKEW_SECS: i64 = 30;

/// What a device presented besides its registration id.
#[derive(Debug, Clone)]
pub enum DeviceCredentials {
    /// A `SharedAccessSignature …` token (HTTP `Authorization`, MQTT password, AMQP SASL).
    Sas(String),
    /// The TLS client certificate chain (DER, leaf first), as the handshake presented it.
    X509(Arc<Vec<Vec<u8>>>),
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
    /// For X.509: the device's certificate info and the group's signing certificate (§1.5 `x509`).
    pub x509: Option<X509RegistrationResult>,
    /// For TPM: the challenge the device answered.
    pub tpm: Option<TpmChallenge>,
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

/// What attestation reads: enrollments, the CA store (X.509) and TPM challenges.
#[derive(Clone, Copy)]
pub struct Stores<'a> {
    pub enrollments: &'a dyn EnrollmentStore,
    pub certificates: &'a dyn CertificateStore,
    pub challenges: &'a dyn TpmChallengeStore,
}

/// Finds and checks the enrollment of a device presenting `creds`.
pub async fn attest(
    stores: Stores<'_>,
    clock: &dyn Clock,
    scope: &IdScope,
    reg: &RegistrationId,
    creds: &DeviceCredentials,
    presents_tpm: bool,
) -> Result<Attested, DpsError> {
    let Stores { enrollments: store, certificates: cas, challenges } = stores;
    let token = match creds {
        DeviceCredentials::X509(chain) => return attest_x509(store, cas, clock, reg, chain).await,
        DeviceCredentials::Sas(t) => {
            SasToken::parse(t).map_err(|e| DpsError::unauthorized(format!("invalid SharedAccessSignature: {e}")))?
        }
        DeviceCredentials::None if presents_tpm => {
            return Err(DpsError::unauthorized(
                "a TPM device answers its challenge with a SharedAccessSignature signed in its TPM (HTTPS: register without one first to get the challenge; AMQP: the TPM SASL mechanism)",
            ))
        }
        DeviceCredentials::None => {
            return Err(DpsError::unauthorized(
                "no credentials: present a TLS client certificate (X.509) or a SharedAccessSignature (symmetric key: the Authorization header, or the MQTT password)",
            ))
        }
    };
    check_token(&token, scope, reg, clock)?;
    let backend = |e| DpsError::internal(format!("enrollment look-up failed: {e}"));

    if let Some(e) = store.get_enrollment(reg.as_str()).await.map_err(backend)? {
        if e.attestation.kind == AttestationType::Tpm {
            return crate::tpm::attest(challenges, clock, e, &token).await;
        }
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
            x509: None,
            tpm: None,
        });
    }

    for g in store.symmetric_key_group_keys().await.map_err(backend)?.iter() {
        let (p, s) = (hmac_base64(&g.primary, reg.as_str().as_bytes()), hmac_base64(&g.secondary, reg.as_str().as_bytes()));
        let ok = [&p, &s].iter().any(|k| decode_key(k).map(|b| token.verify(&b)).unwrap_or(false));
        if ok {
            return Ok(Attested {
                matched: Matched::Group(Box::new(g.group.clone())),
                attestation: AttestationType::SymmetricKey,
                device_keys: Some((Secret::new(p), Secret::new(s))),
                x509: None,
                tpm: None,
            });
        }
    }
    Err(DpsError::unauthorized(format!(
        "no enrollment accepts '{reg}': there is no individual enrollment for it and no symmetric-key group's derived key verifies its token"
    )))
}

fn chain_refusal(who: &str, e: &ChainError) -> DpsError {
    DpsError::unauthorized(format!("{who}: {e}"))
}

/// A certificate an X.509 enrollment trusts, and whether it may be used (a CA must be verified).
struct Anchor {
    der: Vec<u8>,
    /// `Some(name)`: a CA reference whose CA is not verified yet.
    unverified_ca: Option<String>,
}

/// Loads the CA a reference names (verified or not: whether it may be used is decided once the chain is
/// known to lead to it, so an unrelated unverified CA never hides the device's own reason).
async fn referenced_ca(cas: &dyn CertificateStore, name: &str) -> Result<Anchor, DpsError> {
    let ca = cas.get_ca(name).await.map_err(|e| DpsError::internal(format!("CA look-up failed: {e}")))?.ok_or_else(|| {
        DpsError::unauthorized(format!("the enrollment references CA certificate '{name}', which is not in the certificate store"))
    })?;
    Ok(Anchor { der: decode_certificate(&ca.certificate)?, unverified_ca: (!ca.is_verified).then(|| name.to_owned()) })
}

fn unverified(name: &str) -> DpsError {
    DpsError::unauthorized(format!(
        "CA certificate '{name}' is not verified: prove possession of its key first (dps ca verification-code / dps ca verify)"
    ))
}

/// The certificates an X.509 attestation trusts: signing certificates, or CAs by reference.
async fn anchors(cas: &dyn CertificateStore, x: &X509Attestation, group: bool) -> Vec<Result<Anchor, DpsError>> {
    let mut out = Vec::new();
    let certs = if group { x.signing_certificates.as_ref() } else { None };
    for c in certs.into_iter().flat_map(|c| [c.primary.as_ref(), c.secondary.as_ref()]).flatten() {
        if let Some(text) = c.certificate.as_deref().filter(|t| !t.trim().is_empty()) {
            out.push(decode_certificate(text).map(|der| Anchor { der, unverified_ca: None }));
        }
    }
    // Collected first: an iterator of closures held across an await is not `Send` for every lifetime.
    let names: Vec<String> =
        x.ca_references.iter().flat_map(|r| [r.primary.clone(), r.secondary.clone()]).flatten().filter(|n| !n.is_empty()).collect();
    for name in names {
        out.push(referenced_ca(cas, &name).await);
    }
    out
}

async fn attest_x509(
    store: &dyn EnrollmentStore,
    cas: &dyn CertificateStore,
    clock: &dyn Clock,
    reg: &RegistrationId,
    chain: &[Vec<u8>],
) -> Result<Attested, DpsError> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(DpsError::unauthorized("the TLS client certificate chain is empty"));
    };
    let cn = common_name(leaf)
        .ok_or_else(|| DpsError::unauthorized("Invalid certificate: the device certificate has no subject common name (CN)"))?;
    if cn.chars().count() > 64 {
        return Err(DpsError::unauthorized(format!("Invalid certificate: the CN '{cn}' is longer than 64 characters")));
    }
    if !cn.eq_ignore_ascii_case(reg.as_str()) {
        return Err(DpsError::unauthorized(format!("Invalid certificate: its CN '{cn}' is not the registration id '{reg}'")));
    }
    let now = clock.now();
    check_leaf(leaf, now).map_err(|e| chain_refusal("Invalid certificate", &e))?;
    let device = X509Device { reg, leaf, intermediates, now, leaf_info: certificate_info(&dps_proto_base64(leaf)).ok() };
    match store.get_enrollment(reg.as_str()).await.map_err(lookup_failed)? {
        Some(e) => attest_x509_individual(cas, e, device).await,
        None => attest_x509_group(store, cas, device).await,
    }
}

/// A device presenting its certificate chain.
struct X509Device<'a> {
    reg: &'a RegistrationId,
    leaf: &'a [u8],
    intermediates: &'a [Vec<u8>],
    now: chrono::DateTime<chrono::Utc>,
    leaf_info: Option<dps_proto::X509CertificateInfo>,
}

fn lookup_failed(e: crate::ports::StoreError) -> DpsError {
    DpsError::internal(format!("enrollment look-up failed: {e}"))
}

/// An individual X.509 enrollment: the device's own certificate, or a chain to its CA.
async fn attest_x509_individual(cas: &dyn CertificateStore, e: IndividualEnrollment, device: X509Device<'_>) -> Result<Attested, DpsError> {
    let X509Device { reg, leaf, intermediates, now, leaf_info } = device;
    let Some(x) = e.attestation.x509.as_ref().filter(|_| e.attestation.kind == AttestationType::X509) else {
        return Err(DpsError::unauthorized(format!(
            "the enrollment of '{reg}' uses {} attestation, not X.509",
            e.attestation.kind.as_str()
        )));
    };
    let own = x
        .client_certificates
        .iter()
        .flat_map(|c| [c.primary.as_ref(), c.secondary.as_ref()])
        .flatten()
        .filter_map(|c| c.certificate.as_deref())
        .filter_map(|t| decode_certificate(t).ok())
        .any(|der| der == *leaf);
    let mut matched = own;
    if !matched {
        let mut last = None;
        for anchor in anchors(cas, x, false).await {
            let verdict = anchor.and_then(|a| {
                verify_chain(leaf, intermediates, &a.der, now).map_err(|e| chain_refusal("Invalid certificate", &e))?;
                a.unverified_ca.map_or(Ok(()), |name| Err(unverified(&name)))
            });
            match verdict {
                Ok(()) => {
                    matched = true;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if !matched {
            return Err(last.unwrap_or_else(|| {
                DpsError::unauthorized(format!(
                    "Invalid certificate: it is not the primary or secondary certificate of the enrollment of '{reg}'"
                ))
            }));
        }
    }
    let x509 = X509RegistrationResult { certificate_info: leaf_info, enrollment_group_id: None, signing_certificate_info: None };
    Ok(Attested {
        matched: Matched::Individual(Box::new(e)),
        attestation: AttestationType::X509,
        device_keys: None,
        x509: Some(x509),
        tpm: None,
    })
}

/// X.509 enrollment groups.
async fn attest_x509_group(store: &dyn EnrollmentStore, cas: &dyn CertificateStore, device: X509Device<'_>) -> Result<Attested, DpsError> {
    let X509Device { reg, leaf, intermediates, now, leaf_info } = device;
    // Groups: the one whose certificate is nearest the leaf decides (§4.3 precedence).
    let mut best: Option<(usize, EnrollmentGroup, Vec<u8>)> = None;
    let mut refusals: Vec<(String, DpsError, bool)> = Vec::new();
    let mut groups = store.x509_groups().await.map_err(lookup_failed)?;
    groups.sort_by(|a, b| a.enrollment_group_id.cmp(&b.enrollment_group_id));
    for g in groups {
        let Some(x) = g.attestation.x509.as_ref() else { continue };
        for anchor in anchors(cas, x, true).await {
            let anchor = match anchor {
                Ok(a) => a,
                Err(e) => {
                    // A missing CA is this group's problem, not the device's: mention it only if nothing else fits.
                    refusals.push((g.enrollment_group_id.clone(), e, false));
                    continue;
                }
            };
            match verify_chain(leaf, intermediates, &anchor.der, now) {
                Ok(_) if anchor.unverified_ca.is_some() => {
                    let name = anchor.unverified_ca.clone().unwrap_or_default();
                    refusals.push((g.enrollment_group_id.clone(), unverified(&name), true));
                }
                Ok(v) => {
                    if best.as_ref().is_none_or(|(d, _, _)| v.depth() < *d) {
                        best = Some((v.depth(), g.clone(), anchor.der));
                    }
                }
                Err(e) => {
                    let relevant = !matches!(e, ChainError::UnknownIssuer { .. });
                    refusals.push((g.enrollment_group_id.clone(), chain_refusal("Invalid certificate", &e), relevant));
                }
            }
        }
    }
    if let Some((_, g, anchor)) = best {
        let x509 = X509RegistrationResult {
            certificate_info: leaf_info,
            enrollment_group_id: Some(g.enrollment_group_id.clone()),
            signing_certificate_info: certificate_info(&dps_proto_base64(&anchor)).ok(),
        };
        return Ok(Attested {
            matched: Matched::Group(Box::new(g)),
            attestation: AttestationType::X509,
            device_keys: None,
            x509: Some(x509),
            tpm: None,
        });
    }
    if let Some((group, e, _)) = refusals.iter().find(|(_, _, relevant)| *relevant) {
        return Err(DpsError::unauthorized(format!("{} (enrollment group '{group}')", e.message)));
    }
    Err(DpsError::unauthorized(format!(
        "Invalid certificate: no individual X.509 enrollment for '{reg}', and no enrollment group's certificate is an issuer in the chain it presented"
    )))
}

fn dps_proto_base64(der: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// How long a remembered attestation is trusted at most (it is also dropped when the configuration changes,
/// and never outlives the token or the presented certificates).
pub const MEMO_SECS: i64 = 60;
/// Remembered attestations; the credentials of the same device's polls hit.
pub const MEMO_ENTRIES: usize = 10_000;
/// Longer credentials are not remembered (the key would cost more than it saves).
const MEMO_KEY_MAX: usize = 4096;

/// Attestations remembered by the credentials that proved them, so a device's polls with the same token or
/// certificate chain cost a look-up instead of key derivations or signature checks. An entry is used only
/// while the store's configuration version is the one it was proved under, until the token's expiry, the
/// first expiry in the presented chain, and [`MEMO_SECS`], whichever comes first. TPM answers are never
/// remembered (single use).
pub struct AttestMemo {
    entries: quick_cache::sync::Cache<String, (u64, i64, Attested)>,
}

impl Default for AttestMemo {
    fn default() -> Self {
        Self { entries: quick_cache::sync::Cache::new(MEMO_ENTRIES) }
    }
}

impl AttestMemo {
    fn key(reg: &RegistrationId, creds: &DeviceCredentials) -> Option<String> {
        use sha2::Digest;
        let key = match creds {
            DeviceCredentials::Sas(t) => format!("sas\n{}\n{t}", reg.as_str().to_ascii_lowercase()),
            DeviceCredentials::X509(chain) => {
                let mut h = sha2::Sha256::new();
                for c in chain.iter() {
                    h.update((c.len() as u64).to_be_bytes());
                    h.update(c);
                }
                format!("x509\n{}\n{:x}", reg.as_str().to_ascii_lowercase(), h.finalize())
            }
            DeviceCredentials::None => return None,
        };
        (key.len() <= MEMO_KEY_MAX).then_some(key)
    }

    /// Until when an attestation proved now by `creds` may be remembered (unix seconds).
    fn valid_until(creds: &DeviceCredentials, now: i64) -> i64 {
        let limit = match creds {
            DeviceCredentials::Sas(t) => {
                SasToken::parse(t).ok().map(|t| i64::try_from(t.expiry()).unwrap_or(i64::MAX).saturating_add(CLOCK_SKEW_SECS))
            }
            DeviceCredentials::X509(chain) => crate::x509::chain::earliest_expiry(chain).map(|t| t.timestamp()),
            DeviceCredentials::None => None,
        };
        limit.unwrap_or(now).min(now.saturating_add(MEMO_SECS))
    }

    /// What the same credentials proved for the same device under configuration `version`, if it still holds.
    pub fn recall(&self, version: u64, now: i64, reg: &RegistrationId, creds: &DeviceCredentials) -> Option<Attested> {
        let (tag, until, hit) = self.entries.get(&Self::key(reg, creds)?)?;
        (tag == version && now <= until).then_some(hit)
    }

    /// Remembers what `creds` proved now (not a TPM answer: it is single use).
    pub fn remember(&self, version: u64, now: i64, reg: &RegistrationId, creds: &DeviceCredentials, attested: &Attested) {
        if let Some(k) = Self::key(reg, creds).filter(|_| attested.tpm.is_none()) {
            self.entries.insert(k, (version, Self::valid_until(creds, now), attested.clone()));
        }
    }
}
