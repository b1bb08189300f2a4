//! [`Store`]: the one store handle the service holds, whichever backend the database URL chose. Every trait
//! is implemented by delegation (`delegate!`), so the service, the engine and the suite see one type.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dps_core::model::{AccessPolicy, Operation, Page, PageRequest, Precondition, RegistrationRecord};
use dps_core::ports::{
    CertificateStore, ConfigVersion, CredentialStore, DeviceRegistryStore, EnrollmentStore, HubStore, IdentityWrite, Lease, OperationStore,
    PolicyStore, RegistrationStore, StoreError, StoreResult, StoredCredentialPolicy, TpmChallenge, TpmChallengeStore,
};
use dps_crypto::{MasterKey, Secret};
use dps_proto::{CaCertificate, CredentialPolicy, DeviceIdentity, EnrollmentGroup, IndividualEnrollment, IssuedCertificate, LinkedHub};

#[cfg(feature = "postgres")]
use crate::PgStore;
use crate::{AttemptWindow, ConsoleAccess, Quarantine, QuarantinedRow, Settings, SqliteStore};

/// The service's store: SQLite (the default, a file in the data directory) or PostgreSQL.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    #[cfg(feature = "postgres")]
    Postgres(PgStore),
}

/// The advisory lock key of [`Store::lock_start`].
#[cfg(feature = "postgres")]
const START_LOCK: i64 = 0x6470_735f_7374_6172; // "dps_star"

/// Held while an instance bootstraps a shared database ([`Store::lock_start`]); [`StartLock::release`] ends it, as
/// does dropping it (its connection is closed, not pooled).
#[derive(Default)]
pub struct StartLock {
    #[cfg(feature = "postgres")]
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
}

impl StartLock {
    pub async fn release(self) {
        #[cfg(feature = "postgres")]
        if let Some(mut conn) = self.conn {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(START_LOCK).execute(&mut *conn).await;
        }
    }
}

/// Runs `$e` with `$s` bound to the backend's store.
macro_rules! delegate {
    // A port call: in a `store` span naming the operation and the backend (debug level: free when it is off).
    ($self:expr, $s:ident => $s2:ident . $op:ident ( $($arg:expr),* ) .await) => {{
        let span = tracing::debug_span!("store", op = stringify!($op), backend = $self.backend());
        tracing::Instrument::instrument(async { delegate!($self, $s => $s2.$op($($arg),*).await, plain) }, span).await
    }};
    ($self:expr, $s:ident => $e:expr, plain) => {
        match $self {
            Store::Sqlite($s) => $e,
            #[cfg(feature = "postgres")]
            Store::Postgres($s) => $e,
        }
    };
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Store::Sqlite($s) => $e,
            #[cfg(feature = "postgres")]
            Store::Postgres($s) => $e,
        }
    };
}

impl Store {
    /// `sqlite` or `postgres`, for spans and logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => "postgres",
        }
    }

    /// Opens the store a database URL names: `postgres://…` / `postgresql://…` (feature `postgres`), else
    /// (`None`) SQLite at `sqlite_path`. Migrations are applied either way.
    pub async fn open(database_url: Option<&str>, sqlite_path: &Path, key: Arc<MasterKey>) -> StoreResult<Self> {
        match database_url {
            None => Ok(Self::Sqlite(SqliteStore::open(sqlite_path, key).await?)),
            Some(url) if is_postgres(url) => Self::open_postgres(url, key).await,
            Some(url) => Err(StoreError::backend(format!(
                "the database URL {} is not a PostgreSQL URL (postgres://…); leave it out to use SQLite in the data directory",
                redact_url(url)
            ))),
        }
    }

    #[cfg(feature = "postgres")]
    async fn open_postgres(url: &str, key: Arc<MasterKey>) -> StoreResult<Self> {
        PgStore::open(url, key).await.map(Self::Postgres)
    }

    #[cfg(not(feature = "postgres"))]
    async fn open_postgres(url: &str, _key: Arc<MasterKey>) -> StoreResult<Self> {
        Err(StoreError::backend(format!("{} names PostgreSQL, but this build has no PostgreSQL support", redact_url(url))))
    }

    /// The key ring every secret is sealed with (a rotation makes a new key current in it).
    pub fn master_key(&self) -> &MasterKey {
        delegate!(self, s => &*s.key)
    }

    /// One pass of a master-key rotation (#15 item 4): re-seals with the store's current key every sealed value
    /// that key did not seal (see `reseal.rs`). Run it until a pass finds nothing stale.
    pub async fn reseal(&self) -> StoreResult<crate::ResealReport> {
        delegate!(self, s => crate::reseal::reseal_all(s, &s.key).await)
    }

    /// Every sealed value: its table, the associated data it is bound to and its sealed text (what a rotation
    /// re-seals; tests check no value opens with a retired key).
    pub async fn sealed_values(&self) -> StoreResult<Vec<(String, String, String)>> {
        delegate!(self, s => crate::reseal::sealed_values(s).await)
    }

    /// After the master key was lost (`dps keys reset`): removes symmetric-key enrollments and groups, access
    /// policies and TPM challenges, clears every other sealed column and the key check row. Enrollments
    /// without secrets survive. Answers how many rows changed.
    pub async fn forget_secrets(&self) -> StoreResult<u64> {
        delegate!(self, s => s.forget_secrets().await).map(|v| v.iter().sum())
    }

    /// `sqlite` or `postgres`, for logs and diagnostics.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => "postgres",
        }
    }

    /// Takes the start lock: instances starting at once on one database take turns at bootstrapping it (ID scope,
    /// owner policy, admin password), so the second reads what the first made instead of replacing it. SQLite:
    /// nothing to take (the data directory's lock is this process's).
    pub async fn lock_start(&self) -> StoreResult<StartLock> {
        match self {
            Self::Sqlite(_) => Ok(StartLock::default()),
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => {
                let mut conn = s.pool.acquire().await.map_err(crate::backend)?;
                // Whatever happens, the session (and its advisory lock) ends with the connection.
                conn.close_on_drop();
                sqlx::query("SELECT pg_advisory_lock($1)").bind(START_LOCK).execute(&mut *conn).await.map_err(crate::backend)?;
                Ok(StartLock { conn: Some(conn) })
            }
        }
    }

    /// Whether other processes may use this store at the same time (PostgreSQL: several `dps serve` behind a load
    /// balancer); SQLite is owned by the one process holding the data directory's lock.
    pub fn is_shared(&self) -> bool {
        !matches!(self, Self::Sqlite(_))
    }

    pub async fn close(&self) {
        delegate!(self, s => s.close().await)
    }

    /// The keys stored with an identity (primary, secondary), for tests and the console's device view.
    pub async fn identity_keys(&self, hub: &str, device_id: &str) -> StoreResult<Option<(Secret, Secret)>> {
        delegate!(self, s => s.identity_keys(hub, device_id).await)
    }
}

impl From<SqliteStore> for Store {
    fn from(s: SqliteStore) -> Self {
        Self::Sqlite(s)
    }
}

#[cfg(feature = "postgres")]
impl From<PgStore> for Store {
    fn from(s: PgStore) -> Self {
        Self::Postgres(s)
    }
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres(url: &str) -> bool {
    let lower = url.trim_start().get(..13).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// `url` with its password replaced by `***` (`user:password@` and a `password=` query parameter), for logs
/// and error messages.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    // user:password@host
    if let Some(scheme_end) = out.find("://") {
        let rest_at = scheme_end + 3;
        let authority_end = out.get(rest_at..).and_then(|r| r.find(['/', '?', '#'])).map_or(out.len(), |i| rest_at + i);
        if let Some(at) = out.get(rest_at..authority_end).and_then(|a| a.rfind('@')).map(|i| rest_at + i) {
            if let Some(colon) = out.get(rest_at..at).and_then(|u| u.find(':')).map(|i| rest_at + i) {
                out.replace_range(colon + 1..at, "***");
            }
        }
    }
    // ?password=… / &password=…
    let mut searched = 0;
    while let Some(found) = out.get(searched..).and_then(|r| r.to_ascii_lowercase().find("password=")).map(|i| searched + i) {
        let preceded = found == 0 || matches!(out.as_bytes().get(found - 1), Some(b'?' | b'&'));
        let value = found + "password=".len();
        if preceded {
            let end = out.get(value..).and_then(|r| r.find(['&', '#'])).map_or(out.len(), |i| value + i);
            out.replace_range(value..end, "***");
            searched = value + 3;
        } else {
            searched = value;
        }
    }
    out
}

#[async_trait]
impl TpmChallengeStore for Store {
    async fn put_tpm_challenge(&self, c: &TpmChallenge) -> StoreResult<()> {
        delegate!(self, s => s.put_tpm_challenge(c).await)
    }
    async fn get_tpm_challenge(&self, registration_id: &str) -> StoreResult<Option<TpmChallenge>> {
        delegate!(self, s => s.get_tpm_challenge(registration_id).await)
    }
    async fn claim_tpm_challenge(&self, registration_id: &str, operation_id: &str) -> StoreResult<bool> {
        delegate!(self, s => s.claim_tpm_challenge(registration_id, operation_id).await)
    }
    async fn purge_tpm_challenges(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        delegate!(self, s => s.purge_tpm_challenges(before).await)
    }
}

#[async_trait]
impl EnrollmentStore for Store {
    async fn get_enrollment(&self, registration_id: &str) -> StoreResult<Option<IndividualEnrollment>> {
        delegate!(self, s => s.get_enrollment(registration_id).await)
    }
    async fn put_enrollment(&self, e: IndividualEnrollment, pre: Precondition) -> StoreResult<IndividualEnrollment> {
        delegate!(self, s => s.put_enrollment(e, pre).await)
    }
    async fn delete_enrollment(&self, registration_id: &str, pre: Precondition) -> StoreResult<()> {
        delegate!(self, s => s.delete_enrollment(registration_id, pre).await)
    }
    async fn query_enrollments(&self, page: PageRequest) -> StoreResult<Page<IndividualEnrollment>> {
        delegate!(self, s => s.query_enrollments(page).await)
    }
    async fn put_enrollments(
        &self,
        items: Vec<(IndividualEnrollment, Precondition)>,
    ) -> StoreResult<Vec<StoreResult<IndividualEnrollment>>> {
        delegate!(self, s => s.put_enrollments(items).await)
    }
    async fn get_group(&self, group_id: &str) -> StoreResult<Option<EnrollmentGroup>> {
        delegate!(self, s => s.get_group(group_id).await)
    }
    async fn put_group(&self, g: EnrollmentGroup, pre: Precondition) -> StoreResult<EnrollmentGroup> {
        delegate!(self, s => s.put_group(g, pre).await)
    }
    async fn delete_group(&self, group_id: &str, pre: Precondition) -> StoreResult<()> {
        delegate!(self, s => s.delete_group(group_id, pre).await)
    }
    async fn query_groups(&self, page: PageRequest) -> StoreResult<Page<EnrollmentGroup>> {
        delegate!(self, s => s.query_groups(page).await)
    }
    async fn put_groups(&self, items: Vec<(EnrollmentGroup, Precondition)>) -> StoreResult<Vec<StoreResult<EnrollmentGroup>>> {
        delegate!(self, s => s.put_groups(items).await)
    }
    async fn symmetric_key_groups(&self) -> StoreResult<Vec<EnrollmentGroup>> {
        delegate!(self, s => s.symmetric_key_groups().await)
    }
    async fn x509_groups(&self) -> StoreResult<Vec<EnrollmentGroup>> {
        delegate!(self, s => s.x509_groups().await)
    }
}

impl ConfigVersion for Store {
    fn config_version(&self) -> u64 {
        delegate!(self, s => s.config_version())
    }
}

#[async_trait]
impl CertificateStore for Store {
    async fn list_cas(&self) -> StoreResult<Vec<CaCertificate>> {
        delegate!(self, s => s.list_cas().await)
    }
    async fn get_ca(&self, name: &str) -> StoreResult<Option<CaCertificate>> {
        delegate!(self, s => s.get_ca(name).await)
    }
    async fn put_ca(&self, ca: CaCertificate, pre: Precondition) -> StoreResult<CaCertificate> {
        delegate!(self, s => s.put_ca(ca, pre).await)
    }
    async fn delete_ca(&self, name: &str, pre: Precondition) -> StoreResult<()> {
        delegate!(self, s => s.delete_ca(name, pre).await)
    }
}

#[async_trait]
impl CredentialStore for Store {
    async fn list_credential_policies(&self) -> StoreResult<Vec<CredentialPolicy>> {
        delegate!(self, s => s.list_credential_policies().await)
    }
    async fn get_credential_policy(&self, name: &str) -> StoreResult<Option<StoredCredentialPolicy>> {
        delegate!(self, s => s.get_credential_policy(name).await)
    }
    async fn put_credential_policy(&self, p: StoredCredentialPolicy, pre: Precondition) -> StoreResult<()> {
        delegate!(self, s => s.put_credential_policy(p, pre).await)
    }
    async fn delete_credential_policy(&self, name: &str, pre: Precondition) -> StoreResult<()> {
        delegate!(self, s => s.delete_credential_policy(name, pre).await)
    }
    async fn record_issued(&self, c: &IssuedCertificate) -> StoreResult<()> {
        delegate!(self, s => s.record_issued(c).await)
    }
    async fn list_issued(&self, registration_id: Option<&str>, limit: usize) -> StoreResult<Vec<IssuedCertificate>> {
        delegate!(self, s => s.list_issued(registration_id, limit).await)
    }
}

#[async_trait]
impl RegistrationStore for Store {
    async fn get_registration(&self, registration_id: &str) -> StoreResult<Option<RegistrationRecord>> {
        delegate!(self, s => s.get_registration(registration_id).await)
    }
    async fn put_registration(&self, r: RegistrationRecord) -> StoreResult<()> {
        delegate!(self, s => s.put_registration(r).await)
    }
    async fn delete_registration(&self, registration_id: &str, pre: Precondition) -> StoreResult<()> {
        delegate!(self, s => s.delete_registration(registration_id, pre).await)
    }
    async fn query_registrations(&self, group_id: Option<&str>, page: PageRequest) -> StoreResult<Page<RegistrationRecord>> {
        delegate!(self, s => s.query_registrations(group_id, page).await)
    }
    async fn assigned_per_hub(&self) -> StoreResult<Vec<(String, u64)>> {
        delegate!(self, s => s.assigned_per_hub().await)
    }
}

#[async_trait]
impl OperationStore for Store {
    async fn put_operation(&self, op: &Operation) -> StoreResult<()> {
        delegate!(self, s => s.put_operation(op).await)
    }
    async fn get_operation(&self, operation_id: &str) -> StoreResult<Option<Operation>> {
        delegate!(self, s => s.get_operation(operation_id).await)
    }
    async fn begin_registration(&self, op: &Operation, record: &RegistrationRecord, lease: &Lease) -> StoreResult<()> {
        delegate!(self, s => s.begin_registration(op, record, lease).await)
    }
    async fn finish_registration(
        &self,
        op: &Operation,
        record: &RegistrationRecord,
        identity: Option<&IdentityWrite>,
        owner: &str,
    ) -> StoreResult<bool> {
        delegate!(self, s => s.finish_registration(op, record, identity, owner).await)
    }
    async fn renew_lease(&self, operation_id: &str, lease: &Lease) -> StoreResult<bool> {
        delegate!(self, s => s.renew_lease(operation_id, lease).await)
    }
    async fn claim_operations(&self, lease: &Lease, expired_before: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Operation>> {
        delegate!(self, s => s.claim_operations(lease, expired_before, limit).await)
    }
    async fn purge_operations(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        delegate!(self, s => s.purge_operations(before).await)
    }
}

#[async_trait]
impl HubStore for Store {
    async fn list_hubs(&self) -> StoreResult<Vec<LinkedHub>> {
        delegate!(self, s => s.list_hubs().await)
    }
    async fn put_hub(&self, hub: LinkedHub) -> StoreResult<()> {
        delegate!(self, s => s.put_hub(hub).await)
    }
    async fn delete_hub(&self, host_name: &str) -> StoreResult<()> {
        delegate!(self, s => s.delete_hub(host_name).await)
    }
}

#[async_trait]
impl PolicyStore for Store {
    async fn list_policies(&self) -> StoreResult<Vec<AccessPolicy>> {
        delegate!(self, s => s.list_policies().await)
    }
    async fn put_policy(&self, p: AccessPolicy) -> StoreResult<()> {
        delegate!(self, s => s.put_policy(p).await)
    }
}

#[async_trait]
impl DeviceRegistryStore for Store {
    async fn put_identity(&self, identity: &DeviceIdentity, keys: Option<(&Secret, &Secret)>) -> StoreResult<()> {
        delegate!(self, s => s.put_identity(identity, keys).await)
    }
    async fn get_identity(&self, hub: &str, device_id: &str) -> StoreResult<Option<DeviceIdentity>> {
        delegate!(self, s => s.get_identity(hub, device_id).await)
    }
    async fn delete_identity(&self, hub: &str, device_id: &str) -> StoreResult<()> {
        delegate!(self, s => s.delete_identity(hub, device_id).await)
    }
    async fn list_identities(&self, hub: Option<&str>) -> StoreResult<Vec<DeviceIdentity>> {
        delegate!(self, s => s.list_identities(hub).await)
    }
}

#[async_trait]
impl Settings for Store {
    async fn get_setting(&self, key: &str) -> StoreResult<Option<String>> {
        delegate!(self, s => s.get_setting(key).await)
    }
    async fn put_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        delegate!(self, s => s.put_setting(key, value).await)
    }
}

#[async_trait]
impl ConsoleAccess for Store {
    async fn open_session(&self, token_key: &str, expires: DateTime<Utc>, now: DateTime<Utc>) -> StoreResult<()> {
        delegate!(self, s => s.open_session(token_key, expires, now).await)
    }
    async fn session_expiry(&self, token_key: &str) -> StoreResult<Option<DateTime<Utc>>> {
        delegate!(self, s => s.session_expiry(token_key).await)
    }
    async fn close_session(&self, token_key: &str) -> StoreResult<()> {
        delegate!(self, s => s.close_session(token_key).await)
    }
    async fn close_all_sessions(&self) -> StoreResult<()> {
        delegate!(self, s => s.close_all_sessions().await)
    }
    async fn count_attempt(&self, key: &str, limit: u32, now: DateTime<Utc>, length: chrono::Duration) -> StoreResult<AttemptWindow> {
        delegate!(self, s => s.count_attempt(key, limit, now, length).await)
    }
    async fn forget_attempts(&self, key: &str) -> StoreResult<()> {
        delegate!(self, s => s.forget_attempts(key).await)
    }
}

#[async_trait]
impl Quarantine for Store {
    async fn quarantined(&self) -> StoreResult<Vec<QuarantinedRow>> {
        delegate!(self, s => s.quarantined().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_database_urls() {
        for (url, want) in [
            ("postgres://dps:s3cr%40t@db.example:5432/dps", "postgres://dps:***@db.example:5432/dps"),
            ("postgres://dps@db/dps?sslmode=require", "postgres://dps@db/dps?sslmode=require"),
            ("postgresql://u:p@h/d?password=x&sslmode=require", "postgresql://u:***@h/d?password=***&sslmode=require"),
            ("postgres://h/d?user=u&Password=p", "postgres://h/d?user=u&Password=***"),
            ("postgres://h/d?xpassword=p", "postgres://h/d?xpassword=p"),
            ("postgres://u:p:q@h", "postgres://u:***@h"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    /// Captures what a fmt subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_port_call_runs_in_a_store_span_naming_the_operation_and_backend() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("builds");
            rt.block_on(async {
                let key = Arc::new(MasterKey::generate().0);
                let store = Store::open(None, &dir.path().join("s.sqlite"), key).await.expect("opens");
                assert_eq!(store.get_enrollment("nobody").await.ok(), Some(None));
                store.close().await;
            });
        });
        let text = String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).into_owned();
        assert!(text.contains("store{op=\"get_enrollment\" backend=\"sqlite\"}"), "{text}");
    }

    #[test]
    fn postgres_urls_are_recognised() {
        assert!(is_postgres("postgres://h/d") && is_postgres("PostgreSQL://h/d"));
        assert!(!is_postgres("sqlite://x") && !is_postgres("postgres") && !is_postgres(""));
    }
}
