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
//!
//! What one request may cost is bounded, since a device is not yet authenticated here: a presented chain of
//! more than [`MAX_CHAIN_CERTIFICATES`] certificates, or one certificate larger than [`MAX_CERTIFICATE_BYTES`],
//! or more than [`MAX_CHAIN_BYTES`] in all, is refused (401002) before anything is parsed; chain verification
//! runs on the blocking pool behind the [`CpuBudget`] (503001 when it stays exhausted); a symmetric-key token is
//! tried against at most [`MAX_SYMMETRIC_KEY_GROUPS_TRIED`] groups (each costs up to four HMACs) — more groups
//! than that is a configuration the service warns about in the log and a device of a group past the bound is
//! refused with a message naming it (Azure's quota is 100 symmetric-key groups, §9). Group keys are decoded
//! once per configuration version (`cache.rs`).

use std::sync::Arc;

use dps_crypto::sas::hmac_base64;
use dps_crypto::{decode_key, SasToken, Secret};
use dps_proto::{
    truncate_for_display, AttestationType, EnrollmentGroup, IdScope, IndividualEnrollment, RegistrationId, X509Attestation,
    X509RegistrationResult,
};

use crate::cpu::CpuBudget;
use crate::error::DpsError;
use crate::model::EnrollmentRef;
use crate::ports::GroupKeys;
use crate::ports::{CertificateStore, EnrollmentStore, TpmChallenge, TpmChallengeStore};
use crate::x509::chain::{check_leaf, verify_chain, ChainError};
use crate::x509::{certificate_info, common_name, decode_certificate};
use crate::Clock;

/// Tokens that expired less than this many seconds ago are still accepted (device clocks drift).
pub const CLOCK_SKEW_SECS: i64 = 30;

/// Most certificates a device's TLS chain may hold (leaf included); a real one holds 2–4.
pub const MAX_CHAIN_CERTIFICATES: usize = 10;
/// Largest DER certificate accepted in a device's chain.
pub const MAX_CERTIFICATE_BYTES: usize = 32 * 1024;
/// Largest device chain accepted, all certificates together.
pub const MAX_CHAIN_BYTES: usize = 64 * 1024;
/// Most symmetric-key groups a token is tried against (10× Azure's quota of 100 groups, §9).
pub const MAX_SYMMETRIC_KEY_GROUPS_TRIED: usize = 1000;

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

    /// The credential policy that issues certificates to its devices.
    pub fn credential_policy_name(&self) -> Option<&str> {
        match self {
            Self::Individual(e) => e.credential_policy_name.as_deref(),
            Self::Group(g) => g.credential_policy_name.as_deref(),
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
    let resource = token
        .resource()
        .map_err(|e| DpsError::unauthorized(format!("the SAS token is malformed: {}", truncate_for_display(&e.to_string()))))?;
    if !resource.eq_ignore_ascii_case(&expected) {
        return Err(DpsError::unauthorized(format!(
            "the SAS token was issued for '{}', not for '{expected}'",
            truncate_for_display(&resource)
        )));
    }
    let now = clock.now().timestamp();
    let se = token.expiry();
    if se < u64::try_from(now.saturating_sub(CLOCK_SKEW_SECS)).unwrap_or(0) {
        return Err(DpsError::unauthorized(format!("the SAS token expired at {se} (now {now})")));
    }
    Ok(())
}

/// What attestation reads: enrollments, the CA store (X.509) and TPM challenges; and the CPU budget its
/// chain verification runs under.
#[derive(Clone, Copy)]
pub struct Stores<'a> {
    pub enrollments: &'a dyn EnrollmentStore,
    pub certificates: &'a dyn CertificateStore,
    pub challenges: &'a dyn TpmChallengeStore,
    pub cpu: &'a CpuBudget,
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
    let Stores { enrollments: store, certificates: cas, challenges, cpu } = stores;
    let token = match creds {
        DeviceCredentials::X509(chain) => return attest_x509(X509Stores { store, cas, cpu }, clock, reg, chain).await,
        DeviceCredentials::Sas(t) => SasToken::parse(t).map_err(|e| {
            DpsError::unauthorized(format!("invalid SharedAccessSignature: {}", truncate_for_display(&e.to_string())))
        })?,
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

    let groups = store.symmetric_key_group_keys().await.map_err(backend)?;
    match match_symmetric_group(&groups, reg, &token) {
        GroupMatch::Found { group, keys } => Ok(Attested {
            matched: Matched::Group(Box::new(group.group.clone())),
            attestation: AttestationType::SymmetricKey,
            device_keys: Some(keys),
            x509: None,
            tpm: None,
        }),
        GroupMatch::NotFound { skipped: 0, .. } => Err(DpsError::unauthorized(format!(
            "no enrollment accepts '{reg}': there is no individual enrollment for it and no symmetric-key group's derived key verifies its token"
        ))),
        GroupMatch::NotFound { tried, skipped } => Err(DpsError::unauthorized(format!(
            "no enrollment accepts '{reg}': no individual enrollment, and none of the first {tried} symmetric-key groups' derived keys verifies its token ({skipped} more groups are not tried: at most {MAX_SYMMETRIC_KEY_GROUPS_TRIED} per request)"
        ))),
    }
}

/// The outcome of trying a token against the symmetric-key groups.
#[derive(Debug)]
pub enum GroupMatch<'g> {
    /// This group's derived key (primary or secondary) verifies the token; `keys` are the device's.
    Found { group: &'g GroupKeys, keys: (Secret, Secret) },
    /// None of the `tried` groups does; `skipped` groups were beyond [`MAX_SYMMETRIC_KEY_GROUPS_TRIED`].
    NotFound { tried: usize, skipped: usize },
}

/// Tries `token` against the derived keys of at most [`MAX_SYMMETRIC_KEY_GROUPS_TRIED`] groups, in the
/// store's order (by group id); the secondary key is derived only when the primary one does not verify.
pub fn match_symmetric_group<'g>(groups: &'g [GroupKeys], reg: &RegistrationId, token: &SasToken) -> GroupMatch<'g> {
    let id = reg.as_str().as_bytes();
    let verifies = |key: &str| decode_key(key).map(|b| token.verify(&b)).unwrap_or(false);
    let tried = groups.len().min(MAX_SYMMETRIC_KEY_GROUPS_TRIED);
    for g in groups.iter().take(tried) {
        let primary = hmac_base64(&g.primary, id);
        let primary_ok = verifies(&primary);
        let secondary = hmac_base64(&g.secondary, id);
        if primary_ok || verifies(&secondary) {
            return GroupMatch::Found { group: g, keys: (Secret::new(primary), Secret::new(secondary)) };
        }
    }
    let skipped = groups.len().saturating_sub(tried);
    if skipped > 0 {
        tracing::warn!(
            groups = groups.len(),
            tried,
            skipped,
            "more symmetric-key enrollment groups than are tried per request: devices of the groups past the bound are refused"
        );
    }
    GroupMatch::NotFound { tried, skipped }
}

/// Refuses a presented chain that is too long or too large before any of it is parsed.
pub fn check_chain_bounds(chain: &[Vec<u8>]) -> Result<(), DpsError> {
    if chain.len() > MAX_CHAIN_CERTIFICATES {
        return Err(DpsError::unauthorized(format!(
            "Invalid certificate: the chain holds {} certificates, at most {MAX_CHAIN_CERTIFICATES} are accepted",
            chain.len()
        )));
    }
    if let Some((i, c)) = chain.iter().enumerate().find(|(_, c)| c.len() > MAX_CERTIFICATE_BYTES) {
        return Err(DpsError::unauthorized(format!(
            "Invalid certificate: certificate {} of the chain has {} bytes, at most {MAX_CERTIFICATE_BYTES} are accepted",
            i.saturating_add(1),
            c.len()
        )));
    }
    let total = chain.iter().fold(0usize, |n, c| n.saturating_add(c.len()));
    if total > MAX_CHAIN_BYTES {
        return Err(DpsError::unauthorized(format!(
            "Invalid certificate: the chain has {total} bytes, at most {MAX_CHAIN_BYTES} are accepted"
        )));
    }
    Ok(())
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

/// What X.509 attestation reads, and the budget its chain verification runs under.
#[derive(Clone, Copy)]
struct X509Stores<'a> {
    store: &'a dyn EnrollmentStore,
    cas: &'a dyn CertificateStore,
    cpu: &'a CpuBudget,
}

async fn attest_x509(
    stores: X509Stores<'_>,
    clock: &dyn Clock,
    reg: &RegistrationId,
    chain: &Arc<Vec<Vec<u8>>>,
) -> Result<Attested, DpsError> {
    check_chain_bounds(chain)?;
    let Some(leaf) = chain.first() else {
        return Err(DpsError::unauthorized("the TLS client certificate chain is empty"));
    };
    let cn = common_name(leaf)
        .ok_or_else(|| DpsError::unauthorized("Invalid certificate: the device certificate has no subject common name (CN)"))?;
    if cn.chars().count() > 64 {
        return Err(DpsError::unauthorized(format!(
            "Invalid certificate: the CN '{}' is longer than 64 characters",
            truncate_for_display(&cn)
        )));
    }
    if !cn.eq_ignore_ascii_case(reg.as_str()) {
        return Err(DpsError::unauthorized(format!("Invalid certificate: its CN '{cn}' is not the registration id '{reg}'")));
    }
    let now = clock.now();
    check_leaf(leaf, now).map_err(|e| chain_refusal("Invalid certificate", &e))?;
    let device = X509Device { reg, chain: Arc::clone(chain), now, leaf_info: certificate_info(&dps_proto_base64(leaf)).ok() };
    match stores.store.get_enrollment(reg.as_str()).await.map_err(lookup_failed)? {
        Some(e) => attest_x509_individual(stores, e, device).await,
        None => attest_x509_group(stores, device).await,
    }
}

/// A device presenting its certificate chain (leaf first; bounded by [`check_chain_bounds`]).
struct X509Device<'a> {
    reg: &'a RegistrationId,
    chain: Arc<Vec<Vec<u8>>>,
    now: chrono::DateTime<chrono::Utc>,
    leaf_info: Option<dps_proto::X509CertificateInfo>,
}

impl X509Device<'_> {
    fn leaf(&self) -> &[u8] {
        self.chain.first().map_or(&[], Vec::as_slice)
    }
}

/// Verifies `chain` (leaf first) up to `anchor` at `now`.
fn verify_presented(
    chain: &[Vec<u8>],
    anchor: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<crate::x509::chain::VerifiedChain, ChainError> {
    let (leaf, intermediates) = chain.split_first().map_or((&[][..], &[][..]), |(l, i)| (l.as_slice(), i));
    verify_chain(leaf, intermediates, anchor, now)
}

fn lookup_failed(e: crate::ports::StoreError) -> DpsError {
    DpsError::internal(format!("enrollment look-up failed: {e}"))
}

/// An individual X.509 enrollment: the device's own certificate, or a chain to its CA.
async fn attest_x509_individual(stores: X509Stores<'_>, e: IndividualEnrollment, device: X509Device<'_>) -> Result<Attested, DpsError> {
    let reg = device.reg;
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
        .any(|der| der == device.leaf());
    if !own {
        let anchors = anchors(stores.cas, x, false).await;
        let (chain, now) = (Arc::clone(&device.chain), device.now);
        let verdict = stores.cpu.run("X.509 chain verification", move || individual_verdict(&chain, now, anchors)).await?;
        verdict.map_err(|last| {
            last.unwrap_or_else(|| {
                DpsError::unauthorized(format!(
                    "Invalid certificate: it is not the primary or secondary certificate of the enrollment of '{reg}'"
                ))
            })
        })?;
    }
    let x509 = X509RegistrationResult { certificate_info: device.leaf_info, enrollment_group_id: None, signing_certificate_info: None };
    Ok(Attested {
        matched: Matched::Individual(Box::new(e)),
        attestation: AttestationType::X509,
        device_keys: None,
        x509: Some(x509),
        tpm: None,
    })
}

/// Whether the chain leads to one of an individual enrollment's CAs; else the last refusal (if any).
fn individual_verdict(
    chain: &[Vec<u8>],
    now: chrono::DateTime<chrono::Utc>,
    anchors: Vec<Result<Anchor, DpsError>>,
) -> Result<(), Option<DpsError>> {
    let mut last = None;
    for anchor in anchors {
        let verdict = anchor.and_then(|a| {
            verify_presented(chain, &a.der, now).map_err(|e| chain_refusal("Invalid certificate", &e))?;
            a.unverified_ca.map_or(Ok(()), |name| Err(unverified(&name)))
        });
        match verdict {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last)
}

/// X.509 enrollment groups: the one whose certificate is nearest the leaf decides (§4.3 precedence).
async fn attest_x509_group(stores: X509Stores<'_>, device: X509Device<'_>) -> Result<Attested, DpsError> {
    let reg = device.reg;
    let mut groups = stores.store.x509_groups().await.map_err(lookup_failed)?;
    groups.sort_by(|a, b| a.enrollment_group_id.cmp(&b.enrollment_group_id));
    let mut candidates = Vec::with_capacity(groups.len());
    for g in groups {
        let Some(x) = g.attestation.x509.as_ref() else { continue };
        let anchors = anchors(stores.cas, x, true).await;
        candidates.push((g, anchors));
    }
    let (chain, now) = (Arc::clone(&device.chain), device.now);
    let (best, refusals) = stores.cpu.run("X.509 chain verification", move || group_verdict(&chain, now, candidates)).await?;
    if let Some((g, anchor)) = best {
        let x509 = X509RegistrationResult {
            certificate_info: device.leaf_info,
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

/// A group's refusal: the group, why, and whether it concerns this device (not just an unrelated issuer).
type Refusal = (String, DpsError, bool);

/// The group nearest the leaf with its anchor, and every group's refusal.
fn group_verdict(
    chain: &[Vec<u8>],
    now: chrono::DateTime<chrono::Utc>,
    candidates: Vec<(EnrollmentGroup, Vec<Result<Anchor, DpsError>>)>,
) -> (Option<(EnrollmentGroup, Vec<u8>)>, Vec<Refusal>) {
    let mut best: Option<(usize, EnrollmentGroup, Vec<u8>)> = None;
    let mut refusals: Vec<Refusal> = Vec::new();
    for (g, anchors) in candidates {
        for anchor in anchors {
            let anchor = match anchor {
                Ok(a) => a,
                Err(e) => {
                    // A missing CA is this group's problem, not the device's: mention it only if nothing else fits.
                    refusals.push((g.enrollment_group_id.clone(), e, false));
                    continue;
                }
            };
            match (verify_presented(chain, &anchor.der, now), anchor.unverified_ca) {
                (Ok(_), Some(name)) => refusals.push((g.enrollment_group_id.clone(), unverified(&name), true)),
                (Ok(v), None) => {
                    if best.as_ref().is_none_or(|(d, _, _)| v.depth() < *d) {
                        best = Some((v.depth(), g.clone(), anchor.der));
                    }
                }
                (Err(e), _) => {
                    let relevant = !matches!(e, ChainError::UnknownIssuer { .. });
                    refusals.push((g.enrollment_group_id.clone(), chain_refusal("Invalid certificate", &e), relevant));
                }
            }
        }
    }
    (best.map(|(_, g, der)| (g, der)), refusals)
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
    entries: quick_cache::sync::Cache<String, (u64, i64, Arc<Attested>)>,
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
        (tag == version && now <= until).then(|| Attested::clone(&hit))
    }

    /// Remembers what `creds` proved now (not a TPM answer: it is single use).
    pub fn remember(&self, version: u64, now: i64, reg: &RegistrationId, creds: &DeviceCredentials, attested: &Attested) {
        if let Some(k) = Self::key(reg, creds).filter(|_| attested.tpm.is_none()) {
            self.entries.insert(k, (version, Self::valid_until(creds, now), Arc::new(attested.clone())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::testing::{symmetric_group, FakeStore};

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn scope() -> IdScope {
        IdScope::try_from("0ne0001A2B3".to_owned()).expect("a scope")
    }

    async fn attest_with(store: &FakeStore, reg: &str, creds: DeviceCredentials) -> Result<Attested, DpsError> {
        let cpu = CpuBudget::new(2, std::time::Duration::from_secs(5));
        let stores = Stores { enrollments: store, certificates: store, challenges: store, cpu: &cpu };
        let reg = RegistrationId::try_from(reg).expect("an id");
        attest(stores, &ManualClock::new(now()), &scope(), &reg, &creds, false).await
    }

    /// A token for `reg` signed with the key a group with `group_key` derives for it.
    fn derived_token(group_key: &str, reg: &str) -> String {
        let derived = hmac_base64(&decode_key(group_key).expect("a key"), reg.as_bytes());
        let resource = format!("{}/registrations/{reg}", scope().as_str());
        let se = u64::try_from(now().timestamp() + 3600).unwrap_or(0);
        dps_crypto::sas::build_token(&decode_key(&derived).expect("derived"), &resource, se, Some("registration"))
    }

    #[tokio::test]
    async fn a_chain_too_long_or_too_large_is_refused_before_it_is_parsed() {
        let store = FakeStore::default();
        let cases = [
            (vec![vec![0x30u8; 100]; MAX_CHAIN_CERTIFICATES + 1], "at most 10 are accepted"),
            (vec![vec![0x30u8; MAX_CERTIFICATE_BYTES + 1]], "at most 32768 are accepted"),
            (vec![vec![0x30u8; 30 * 1024]; 3], "at most 65536 are accepted"),
        ];
        for (chain, expected) in cases {
            let e = attest_with(&store, "dev1", DeviceCredentials::X509(Arc::new(chain))).await.expect_err("refused");
            assert_eq!(e.code(), 401002);
            // Garbage that were parsed would be refused for having no CN instead.
            assert!(e.message.contains(expected), "{}", e.message);
        }
        assert!(check_chain_bounds(&vec![vec![0u8; MAX_CERTIFICATE_BYTES]; 2]).is_ok(), "the bounds themselves are accepted");
    }

    #[tokio::test]
    async fn a_token_is_tried_against_a_bounded_number_of_groups() {
        let (other, mine) = (dps_crypto::generate_key(), dps_crypto::generate_key());
        let mut symmetric: Vec<EnrollmentGroup> = (0..10_000).map(|i| symmetric_group(&format!("g{i:05}"), &other, &other)).collect();
        symmetric.push(symmetric_group("g10000", &mine, &mine));
        let groups: Vec<GroupKeys> = symmetric.iter().cloned().filter_map(GroupKeys::of).collect();
        let reg = RegistrationId::try_from("dev1").expect("an id");
        let token = SasToken::parse(&derived_token(&mine, "dev1")).expect("a token");
        match match_symmetric_group(&groups, &reg, &token) {
            GroupMatch::NotFound { tried, skipped } => assert_eq!((tried, skipped), (MAX_SYMMETRIC_KEY_GROUPS_TRIED, 9_001)),
            GroupMatch::Found { group, .. } => panic!("10,001 groups were tried, {} matched", group.group.enrollment_group_id),
        }
        let e = attest_with(&FakeStore { symmetric, ..FakeStore::default() }, "dev1", DeviceCredentials::Sas(derived_token(&mine, "dev1")))
            .await
            .expect_err("the device's group is past the bound");
        assert_eq!(e.code(), 401002);
        assert!(e.message.contains("9001 more groups are not tried: at most 1000 per request"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_group_within_the_bound_matches_by_its_primary_or_secondary_key() {
        let (other, primary, secondary) = (dps_crypto::generate_key(), dps_crypto::generate_key(), dps_crypto::generate_key());
        let mut symmetric: Vec<EnrollmentGroup> = (0..10).map(|i| symmetric_group(&format!("g{i:02}"), &other, &other)).collect();
        symmetric.push(symmetric_group("mine", &primary, &secondary));
        let store = FakeStore { symmetric, ..FakeStore::default() };
        for key in [&primary, &secondary] {
            let a = attest_with(&store, "dev1", DeviceCredentials::Sas(derived_token(key, "dev1"))).await.expect("attested");
            assert_eq!(a.matched.reference(), EnrollmentRef::Group("mine".into()));
            let (p, s) = a.device_keys.expect("the device's keys");
            assert_eq!(p.expose(), hmac_base64(&decode_key(&primary).expect("key"), b"dev1"));
            assert_eq!(s.expose(), hmac_base64(&decode_key(&secondary).expect("key"), b"dev1"));
        }
    }

    #[tokio::test]
    async fn peer_strings_in_refusals_are_truncated() {
        let store = FakeStore::default();
        let resource = format!("{}/registrations/{}", scope().as_str(), "x".repeat(100_000));
        let token = dps_crypto::sas::build_token(b"0123456789abcdef", &resource, 1, None);
        let e = attest_with(&store, "dev1", DeviceCredentials::Sas(token)).await.expect_err("refused");
        assert_eq!(e.code(), 401002);
        assert!(e.message.len() < 1000, "{} bytes", e.message.len());
        assert!(e.message.contains("more bytes]"), "{}", e.message);
    }
}
