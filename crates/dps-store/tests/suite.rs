//! The store suite: written against the `dps-core` store traits (through [`Store`], the handle the service
//! holds), instantiated once per backend by `suite!`: every test runs in `mod sqlite` (a file in a temporary
//! directory) and in `mod postgres` (a fresh database on this test process's throw-away cluster, see
//! `dps_store::testing`; `DPS_TEST_DATABASE_URL` names a server to use instead). The tests after the list are
//! about one backend's storage itself (what is in the file or the tables).

use std::sync::Arc;

use dps_core::model::{AccessPolicy, EnrollmentRef, Operation, PageRequest, Precondition, RegistrationRecord, Right};
use dps_core::ports::{
    CertificateStore, ConfigVersion, CredentialStore, DeviceRegistryStore, EnrollmentStore, HubStore, IdentityWrite, OperationStore,
    PolicyStore, RegistrationStore, StoreError, StoreResult, StoredCredentialPolicy, TpmChallenge, TpmChallengeStore,
};
use dps_crypto::{MasterKey, Secret};
use dps_proto::*;
use dps_store::{PgStore, SqliteStore, Store};

async fn sqlite_file() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (key, _) = MasterKey::generate();
    let s = SqliteStore::open(&dir.path().join("dps.sqlite"), Arc::new(key)).await.expect("opens");
    (s, dir)
}

/// A store on a fresh PostgreSQL database, and the database's URL.
async fn postgres() -> (Store, String) {
    let url = dps_store::testing::database_url().await;
    let (key, _) = MasterKey::generate();
    let s = PgStore::open(&url, Arc::new(key)).await.expect("opens");
    (Store::from(s), url)
}

fn sym_enrollment(id: &str) -> IndividualEnrollment {
    serde_json::from_value(serde_json::json!({
        "registrationId": id,
        "attestation": { "type": "symmetricKey", "symmetricKey": { "primaryKey": "cHJpbWFyeS1rZXktMTIzNDU2", "secondaryKey": "c2Vjb25kYXJ5LWtleS0xMjM0" } },
        "etag": "\"e1\"",
        "createdDateTimeUtc": "2024-01-01T00:00:00Z",
        "initialTwin": { "tags": { "site": "b12" } }
    }))
    .expect("deserialises")
}

fn group(id: &str, kind: &str) -> EnrollmentGroup {
    let att = if kind == "symmetricKey" {
        serde_json::json!({ "type": "symmetricKey", "symmetricKey": { "primaryKey": "Z3JvdXAta2V5LXByaW1hcnkx", "secondaryKey": "Z3JvdXAta2V5LXNlY29uZGFyeQ==" } })
    } else {
        serde_json::json!({ "type": "x509", "x509": { "caReferences": { "primary": "root" } } })
    };
    serde_json::from_value(serde_json::json!({ "enrollmentGroupId": id, "attestation": att, "etag": "\"g1\"" })).expect("deserialises")
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (s, _dir) = super::sqlite_file().await;
                    super::$name(&s.into()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let (s, _url) = super::postgres().await;
                    super::$name(&s).await;
                }
            )*
        }
    };
}

suite!(
    enrollments_round_trip_case_insensitively,
    conditional_writes_follow_if_match,
    created_time_survives_replacement,
    paging_visits_every_item_once,
    symmetric_key_groups_are_listed,
    registrations_are_listed_by_group,
    operations_persist_and_purge,
    hubs_and_policies_round_trip,
    identities_keep_their_keys_sealed,
    search_narrows_pages_and_totals_count_matches,
    query_filters_narrow_pages_and_totals,
    assignments_are_counted_per_hub,
    tpm_challenges_are_sealed_single_use_and_purged,
    one_operation_assigning_per_device,
    finishing_needs_the_lease,
    expired_leases_are_claimed_oldest_first,
    concurrent_writes_all_commit,
    the_identity_is_written_with_the_outcome,
    every_configuration_write_changes_the_version,
    the_configuration_cache_follows_every_write,
    batch_writes_answer_per_item_in_order,
    batch_of_ten_thousand_writes,
    ca_certificates_round_trip,
    settings_round_trip,
    a_rotation_reseals_every_secret_under_the_new_key,
    a_lost_key_reset_keeps_what_has_no_secret,
    console_sessions_are_shared_and_end,
    sign_in_attempts_are_counted_per_window,
    concurrent_sign_in_attempts_never_pass_the_limit,
    credential_policies_and_the_issuance_log,
);

/// #16 item 8: credential policies are conditional writes looked up in any case, keep an uploaded CA's key
/// (never in the document) and the issuance log lists the newest first, per device or all.
async fn credential_policies_and_the_issuance_log(s: &Store) {
    let mut p =
        CredentialPolicy { etag: Some("\"c1\"".into()), private_key: Some("in the document?".into()), ..CredentialPolicy::local("Line-1") };
    s.put_credential_policy(StoredCredentialPolicy { policy: p.clone(), key: Some(Secret::new("KEY")) }, Precondition::NotExists)
        .await
        .expect("create");
    let got = s.get_credential_policy("line-1").await.expect("get").expect("found");
    assert_eq!((got.policy.private_key, got.key.as_ref().map(Secret::expose)), (None, Some("KEY")));
    assert_eq!(
        s.put_credential_policy(StoredCredentialPolicy { policy: p.clone(), key: None }, Precondition::NotExists).await,
        Err(StoreError::Conflict)
    );
    p.validity_days = 7;
    let stale = Precondition::Etag("\"zz\"".into());
    assert_eq!(
        s.put_credential_policy(StoredCredentialPolicy { policy: p.clone(), key: None }, stale).await,
        Err(StoreError::PreconditionFailed)
    );
    s.put_credential_policy(StoredCredentialPolicy { policy: p, key: None }, Precondition::Etag("\"c1\"".into())).await.expect("replace");
    let listed = s.list_credential_policies().await.expect("list");
    assert_eq!(listed.iter().map(|p| (p.name.as_str(), p.validity_days)).collect::<Vec<_>>(), [("Line-1", 7)]);
    assert!(s.get_credential_policy("LINE-1").await.expect("get").is_some_and(|c| c.key.is_none()));
    s.delete_credential_policy("LINE-1", Precondition::None).await.expect("delete");
    assert_eq!(s.delete_credential_policy("line-1", Precondition::None).await, Err(StoreError::NotFound));

    let t0 = dps_core::Clock::now(&dps_core::SystemClock);
    for (serial, device, minutes) in [("01", "Dev-A", 1), ("02", "dev-b", 2), ("03", "dev-a", 3)] {
        let c = IssuedCertificate {
            registration_id: device.into(),
            credential_policy_name: "line-1".into(),
            info: dps_proto::X509CertificateInfo { serial_number: serial.into(), ..Default::default() },
            issued_date_time_utc: Some(t0 + chrono::Duration::minutes(minutes)),
            ..Default::default()
        };
        s.record_issued(&c).await.expect("log");
    }
    let serials = |v: Vec<IssuedCertificate>| v.into_iter().map(|c| c.info.serial_number).collect::<Vec<_>>();
    assert_eq!(s.list_issued(None, 10).await.map(serials), Ok(vec!["03".to_owned(), "02".into(), "01".into()]));
    assert_eq!(s.list_issued(Some("DEV-A"), 10).await.map(serials), Ok(vec!["03".to_owned(), "01".into()]));
    assert_eq!(s.list_issued(None, 1).await.map(serials), Ok(vec!["03".to_owned()]));
}

async fn enrollments_round_trip_case_insensitively(s: &Store) {
    let e = sym_enrollment("Dev-1");
    let stored = s.put_enrollment(e.clone(), Precondition::None).await.expect("put enrollment");
    assert_eq!(stored, e);
    let got = s.get_enrollment("dev-1").await.expect("get enrollment");
    assert_eq!(got, Some(e));
    assert_eq!(s.get_enrollment("other").await, Ok(None));
    s.delete_enrollment("DEV-1", Precondition::None).await.expect("delete enrollment");
    assert_eq!(s.get_enrollment("dev-1").await, Ok(None));
    assert_eq!(s.delete_enrollment("dev-1", Precondition::None).await, Err(StoreError::NotFound));
}

async fn conditional_writes_follow_if_match(s: &Store) {
    let e = sym_enrollment("dev");
    assert_eq!(s.put_enrollment(e.clone(), Precondition::Exists).await.map(|_| ()), Err(StoreError::PreconditionFailed));
    assert_eq!(s.put_enrollment(e.clone(), Precondition::Etag("\"e1\"".into())).await.map(|_| ()), Err(StoreError::PreconditionFailed));
    s.put_enrollment(e.clone(), Precondition::NotExists).await.expect("put enrollment");
    assert_eq!(s.put_enrollment(e.clone(), Precondition::NotExists).await.map(|_| ()), Err(StoreError::Conflict));
    let mut e2 = e.clone();
    e2.etag = Some("\"e2\"".into());
    assert_eq!(s.put_enrollment(e2.clone(), Precondition::Etag("\"stale\"".into())).await.map(|_| ()), Err(StoreError::PreconditionFailed));
    s.put_enrollment(e2.clone(), Precondition::Etag("e1".into())).await.expect("put enrollment");
    s.put_enrollment(e2.clone(), Precondition::Exists).await.expect("put enrollment");
    assert_eq!(s.delete_enrollment("dev", Precondition::Etag("\"e1\"".into())).await, Err(StoreError::PreconditionFailed));
    s.delete_enrollment("dev", Precondition::Etag("\"e2\"".into())).await.expect("delete enrollment");

    let g = group("g", "symmetricKey");
    s.put_group(g.clone(), Precondition::None).await.expect("put group");
    assert_eq!(s.delete_group("g", Precondition::Etag("\"x\"".into())).await, Err(StoreError::PreconditionFailed));
    s.delete_group("G", Precondition::Exists).await.expect("delete group");
}

async fn created_time_survives_replacement(s: &Store) {
    let e = sym_enrollment("dev");
    s.put_enrollment(e.clone(), Precondition::None).await.expect("put enrollment");
    let mut later = e.clone();
    later.created_date_time_utc = Some(dps_core::Clock::now(&dps_core::SystemClock));
    let stored = s.put_enrollment(later, Precondition::None).await.expect("put enrollment");
    assert_eq!(stored.created_date_time_utc, e.created_date_time_utc);
}

async fn paging_visits_every_item_once(s: &Store) {
    for i in 0..25 {
        s.put_enrollment(sym_enrollment(&format!("dev-{i:02}")), Precondition::None).await.expect("put enrollment");
        s.put_group(group(&format!("g-{i:02}"), "x509"), Precondition::None).await.expect("put group");
    }
    let mut seen = Vec::new();
    let mut page = PageRequest { filter: Vec::new(), continuation: None, max_items: 10, search: None };
    let mut pages = 0;
    loop {
        let p = s.query_enrollments(page.clone()).await.expect("query enrollments");
        pages += 1;
        assert!(p.items.len() <= 10);
        seen.extend(p.items.into_iter().map(|e| e.registration_id));
        match p.continuation {
            Some(c) => page.continuation = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("dev-{i:02}")).collect();
    assert_eq!(seen, expected);
    let p =
        s.query_groups(PageRequest { filter: Vec::new(), continuation: None, max_items: 100, search: None }).await.expect("query groups");
    assert_eq!((p.items.len(), p.continuation), (25, None));
}

async fn search_narrows_pages_and_totals_count_matches(s: &Store) {
    for i in 0..30 {
        let id = if i % 3 == 0 { format!("line-a-{i:02}") } else { format!("bench-{i:02}") };
        s.put_enrollment(sym_enrollment(&id), Precondition::None).await.expect("put enrollment");
    }
    let all = s
        .query_enrollments(PageRequest { filter: Vec::new(), continuation: None, max_items: 5, search: None })
        .await
        .expect("query enrollments");
    assert_eq!((all.items.len(), all.total), (5, 30));
    // Case-insensitive substring of the id, paged like any query, with the total of matches on every page.
    let mut page = PageRequest { filter: Vec::new(), continuation: None, max_items: 4, search: Some("LINE-A".into()) };
    let mut seen = Vec::new();
    loop {
        let p = s.query_enrollments(page.clone()).await.expect("query enrollments");
        assert_eq!(p.total, 10);
        seen.extend(p.items.into_iter().map(|e| e.registration_id));
        match p.continuation {
            Some(c) => page.continuation = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, (0..30).filter(|i| i % 3 == 0).map(|i| format!("line-a-{i:02}")).collect::<Vec<_>>());
    let none = s.query_enrollments(PageRequest { filter: Vec::new(), continuation: None, max_items: 5, search: Some("zzz".into()) }).await;
    assert_eq!(none.map(|p| (p.items.len(), p.total, p.continuation)), Ok((0, 0, None)));
    // Search text is data, never SQL or a pattern.
    let odd = s
        .query_enrollments(PageRequest { filter: Vec::new(), continuation: None, max_items: 5, search: Some("%' OR 1=1 --".into()) })
        .await;
    assert_eq!(odd.map(|p| p.total), Ok(0));
    let underscore =
        s.query_enrollments(PageRequest { filter: Vec::new(), continuation: None, max_items: 5, search: Some("_".into()) }).await;
    assert_eq!(underscore.map(|p| p.total), Ok(0));
    for (id, g) in [("reg-x1", Some("gx")), ("reg-y1", Some("gx")), ("other", None)] {
        s.put_registration(record(id, g)).await.expect("put registration");
    }
    let r = s
        .query_registrations(None, PageRequest { filter: Vec::new(), continuation: None, max_items: 1, search: Some("REG-".into()) })
        .await;
    assert_eq!(r.map(|p| (p.items.len(), p.total, p.continuation.is_some())), Ok((1, 2, true)));
    let r = s
        .query_registrations(Some("gx"), PageRequest { filter: Vec::new(), continuation: None, max_items: 10, search: Some("y1".into()) })
        .await;
    assert_eq!(r.map(|p| p.total), Ok(1));
}

/// A query's `WHERE` (dps-core `query`) is applied in the store: pages, continuation and total are the filtered ones.
async fn query_filters_narrow_pages_and_totals(s: &Store) {
    use dps_core::query::{parse, Collection};
    for i in 0..12 {
        let mut e = sym_enrollment(&format!("dev-{i:02}"));
        e.device_id = Some(if i % 2 == 0 { "Even".into() } else { "odd".into() });
        e.provisioning_status = Some(if i < 6 { ProvisioningStatus::Enabled } else { ProvisioningStatus::Disabled });
        e.capabilities = Some(DeviceCapabilities { iot_edge: i % 4 == 0 });
        s.put_enrollment(e, Precondition::None).await.expect("put enrollment");
    }
    let filtered = |q: &str| {
        let filter = parse(q, Collection::Enrollments).unwrap_or_else(|e| panic!("{q}: {e}"));
        PageRequest { filter, continuation: None, max_items: 2, search: None }
    };
    let mut page = filtered("SELECT * FROM enrollments WHERE deviceId = 'Even' AND provisioningStatus = 'DISABLED'");
    let mut seen = Vec::new();
    loop {
        let p = s.query_enrollments(page.clone()).await.expect("query enrollments");
        assert_eq!(p.total, 3);
        seen.extend(p.items.into_iter().map(|e| e.registration_id));
        match p.continuation {
            Some(c) => page.continuation = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ["dev-06", "dev-08", "dev-10"]);
    let count = |q: &'static str| {
        let page = filtered(q);
        async move { s.query_enrollments(page).await.map(|p| p.total) }
    };
    // deviceId is exact; ids, enums and attestation type are case-insensitive; booleans read JSON true/false.
    assert_eq!(count("SELECT * FROM enrollments WHERE deviceId = 'even'").await, Ok(0));
    assert_eq!(count("SELECT * FROM enrollments WHERE registrationId = 'DEV-03'").await, Ok(1));
    assert_eq!(count("SELECT * FROM enrollments WHERE attestation.type = 'symmetrickey'").await, Ok(12));
    assert_eq!(count("SELECT * FROM enrollments WHERE attestation.type = 'x509'").await, Ok(0));
    assert_eq!(count("SELECT * FROM enrollments WHERE capabilities.iotEdge = true").await, Ok(3));
    assert_eq!(count("SELECT * FROM enrollments WHERE capabilities.iotEdge = false AND deviceId = 'odd'").await, Ok(6));
    assert_eq!(count("SELECT * FROM enrollments WHERE allocationPolicy = 'hashed'").await, Ok(0));
    // Values are data, never SQL.
    assert_eq!(count(r"SELECT * FROM enrollments WHERE deviceId = 'x\' OR 1=1 --'").await, Ok(0));
    // A filter combines with the console's search.
    let mut both = filtered("SELECT * FROM enrollments WHERE deviceId = 'odd'");
    both.search = Some("-1".into());
    assert_eq!(s.query_enrollments(both).await.map(|p| p.total), Ok(1));
    s.put_group(group("gx", "x509"), Precondition::None).await.expect("put group");
    s.put_group(group("gs", "symmetricKey"), Precondition::None).await.expect("put group");
    let g = parse("select * from ENROLLMENTGROUPS where attestation.type = 'x509'", Collection::EnrollmentGroups).expect("parses");
    let p = s.query_groups(PageRequest { filter: g, continuation: None, max_items: 10, search: None }).await;
    assert_eq!(p.map(|p| p.items.into_iter().map(|g| g.enrollment_group_id).collect::<Vec<_>>()), Ok(vec!["gx".to_owned()]));
}

async fn assignments_are_counted_per_hub(s: &Store) {
    let assigned = |id: &str, hub: &str| {
        let mut r = record(id, None);
        r.state.assigned_hub = Some(hub.into());
        r
    };
    for (id, hub) in [("d1", "hub-a"), ("d2", "hub-a"), ("d3", "hub-b")] {
        s.put_registration(assigned(id, hub)).await.expect("put registration");
    }
    let mut failed = assigned("d4", "hub-b");
    failed.state.status = Some(RegistrationStatus::Failed);
    s.put_registration(failed).await.expect("put registration");
    let mut counts = s.assigned_per_hub().await.expect("assigned per hub");
    counts.sort();
    assert_eq!(counts, vec![("hub-a".to_owned(), 2), ("hub-b".to_owned(), 1)]);
}

async fn symmetric_key_groups_are_listed(s: &Store) {
    s.put_group(group("sym", "symmetricKey"), Precondition::None).await.expect("put group");
    s.put_group(group("cert", "x509"), Precondition::None).await.expect("put group");
    let groups = s.symmetric_key_groups().await.expect("symmetric key groups");
    assert_eq!(groups.len(), 1);
    let keys = groups[0].attestation.symmetric_key.clone().unwrap_or_default();
    assert_eq!(keys.primary_key.as_deref(), Some("Z3JvdXAta2V5LXByaW1hcnkx"));
}

fn record(id: &str, group: Option<&str>) -> RegistrationRecord {
    RegistrationRecord {
        state: DeviceRegistrationState {
            registration_id: Some(id.into()),
            status: Some(RegistrationStatus::Assigned),
            etag: Some("\"r1\"".into()),
            ..Default::default()
        },
        enrollment: group.map_or(EnrollmentRef::Individual(id.into()), |g| EnrollmentRef::Group(g.into())),
        attestation: AttestationType::SymmetricKey,
        trace: Some(serde_json::json!({ "why": "test" })),
        first_hub: Some("hub-a".into()),
    }
}

async fn registrations_are_listed_by_group(s: &Store) {
    for (id, g) in [("a1", Some("ga")), ("a2", Some("GA")), ("b1", Some("gb")), ("solo", None)] {
        s.put_registration(record(id, g)).await.expect("put registration");
    }
    let all = PageRequest { filter: Vec::new(), continuation: None, max_items: 100, search: None };
    let ga = s.query_registrations(Some("ga"), all.clone()).await.expect("query registrations");
    assert_eq!(ga.items.iter().map(|r| r.registration_id().to_owned()).collect::<Vec<_>>(), ["a1", "a2"]);
    assert_eq!(s.query_registrations(None, all.clone()).await.map(|p| p.items.len()), Ok(4));
    assert_eq!(s.get_registration("SOLO").await.map(|r| r.map(|r| r.trace)), Ok(Some(Some(serde_json::json!({ "why": "test" })))));
    assert_eq!(s.delete_registration("a1", Precondition::Etag("\"zz\"".into())).await, Err(StoreError::PreconditionFailed));
    s.delete_registration("a1", Precondition::Etag("\"r1\"".into())).await.expect("delete registration");
    assert_eq!(s.delete_registration("a1", Precondition::None).await, Err(StoreError::NotFound));
}

async fn operations_persist_and_purge(s: &Store) {
    let t0 = dps_core::Clock::now(&dps_core::SystemClock) - chrono::Duration::hours(48);
    let mk = |id: &str, status| Operation {
        operation_id: id.into(),
        registration_id: "dev".into(),
        status,
        enrollment: EnrollmentRef::Individual("dev".into()),
        attestation: AttestationType::SymmetricKey,
        payload: Some(serde_json::json!({ "a": 1 })),
        force_registration: false,
        tpm: None,
        protocol: None,
        source: Some("127.0.0.2".parse().expect("parses")),
        api_version: Some("2019-03-31".into()),
        x509: None,
        csr: None,
        result: None,
        created: t0,
        updated: t0,
    };
    s.put_operation(&mk("op-old", RegistrationStatus::Assigned)).await.expect("put operation");
    s.put_operation(&mk("op-pending", RegistrationStatus::Assigning)).await.expect("put operation");
    assert_eq!(s.get_operation("op-old").await.map(|o| o.map(|o| o.payload)), Ok(Some(Some(serde_json::json!({ "a": 1 })))));
    // More finished operations than one purge batch: all go, in batches.
    for i in 0..1_234 {
        s.put_operation(&mk(&format!("op-done-{i}"), RegistrationStatus::Failed)).await.expect("put operation");
    }
    assert_eq!(s.purge_operations(dps_core::Clock::now(&dps_core::SystemClock) - chrono::Duration::hours(24)).await, Ok(1_235));
    assert_eq!(s.get_operation("op-old").await, Ok(None));
    assert!(matches!(s.get_operation("op-pending").await, Ok(Some(_))));
}

async fn hubs_and_policies_round_trip(s: &Store) {
    let hub = LinkedHub {
        host_name: "Hub-A.example".into(),
        allocation_weight: 3,
        apply_allocation_policy: true,
        region: Some("eu".into()),
        connector: "builtin".into(),
        ..Default::default()
    };
    s.put_hub(hub.clone()).await.expect("put hub");
    assert_eq!(s.list_hubs().await, Ok(vec![hub]));
    s.delete_hub("hub-a.example").await.expect("delete hub");
    assert_eq!(s.delete_hub("hub-a.example").await, Err(StoreError::NotFound));

    let key = dps_crypto::generate_key();
    s.put_policy(AccessPolicy {
        name: "reader".into(),
        primary_key: Secret::new(key.clone()),
        secondary_key: Secret::new("s"),
        rights: vec![Right::EnrollmentRead],
    })
    .await
    .expect("put policy");
    let p = s.list_policies().await.expect("list policies");
    assert_eq!((p[0].name.as_str(), p[0].primary_key.expose(), p[0].rights.clone()), ("reader", key.as_str(), vec![Right::EnrollmentRead]));
}

async fn identities_keep_their_keys_sealed(s: &Store) {
    let id = DeviceIdentity {
        hub_host_name: "hub".into(),
        device_id: "Dev".into(),
        registration_id: "dev".into(),
        authentication_type: "sas".into(),
        x509_thumbprint: None,
        iot_edge: true,
        initial_twin: None,
        created_by: Some("dps-console:0ne00000001:group:fleet".into()),
    };
    let (p, q) = (Secret::new("primary"), Secret::new("secondary"));
    s.put_identity(&id, Some((&p, &q))).await.expect("put identity");
    assert_eq!(s.get_identity("HUB", "dev").await, Ok(Some(id.clone())));
    let keys = s.identity_keys("hub", "dev").await.expect("identity keys").unwrap_or_else(|| panic!("no keys"));
    assert_eq!((keys.0.expose(), keys.1.expose()), ("primary", "secondary"));
    assert_eq!(s.list_identities(Some("hub")).await.map(|v| v.len()), Ok(1));
    s.delete_identity("hub", "DEV").await.expect("delete identity");
    assert_eq!(s.get_identity("hub", "dev").await, Ok(None));
}

/// Secrets never reach the database file in clear text.
async fn tpm_challenges_are_sealed_single_use_and_purged(s: &Store) {
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("time").with_timezone(&chrono::Utc);
    let challenge = |id: &str, key: &str, minutes: i64| TpmChallenge {
        registration_id: id.into(),
        key: Secret::new(key),
        expires: t0 + chrono::Duration::minutes(minutes),
        operation_id: None,
        endorsement_key: vec![1, 2, 3],
        storage_root_key: vec![4, 5],
    };
    assert!(s.get_tpm_challenge("Dev-T").await.expect("get").is_none());
    s.put_tpm_challenge(&challenge("Dev-T", "azE=", 10)).await.expect("put");
    let got = s.get_tpm_challenge("dev-t").await.expect("get").expect("case-insensitive");
    assert_eq!((got.key.expose(), got.operation_id.as_deref(), got.expires), ("azE=", None, t0 + chrono::Duration::minutes(10)));
    assert_eq!((got.endorsement_key, got.storage_root_key), (vec![1, 2, 3], vec![4, 5]));
    assert!(s.claim_tpm_challenge("DEV-T", "op-1").await.expect("claim"), "the first answer claims it");
    assert!(!s.claim_tpm_challenge("dev-t", "op-2").await.expect("claim"), "single use");
    assert_eq!(s.get_tpm_challenge("dev-t").await.expect("get").and_then(|c| c.operation_id).as_deref(), Some("op-1"));
    s.put_tpm_challenge(&challenge("dev-t", "azI=", 20)).await.expect("a new challenge replaces the old");
    let fresh = s.get_tpm_challenge("dev-t").await.expect("get").expect("there");
    assert_eq!((fresh.key.expose(), fresh.operation_id), ("azI=", None));
    assert!(!s.claim_tpm_challenge("nobody", "op").await.expect("claim"), "nothing to claim");
    s.put_tpm_challenge(&challenge("old", "azM=", 1)).await.expect("put");
    assert_eq!(s.purge_tpm_challenges(t0 + chrono::Duration::minutes(5)).await.expect("purge"), 1);
    assert!(s.get_tpm_challenge("old").await.expect("get").is_none() && s.get_tpm_challenge("dev-t").await.expect("get").is_some());
}

/// #15 item 4: a rotation pass re-seals every sealed column with the new key (a compare-and-set per value),
/// a second pass finds nothing stale, and once the old key is retired everything still reads the same.
async fn a_rotation_reseals_every_secret_under_the_new_key(s: &Store) {
    write_secrets(s).await;
    let hub = LinkedHub {
        host_name: "hub.example".into(),
        connection_string: Some("HostName=hub.example;SharedAccessKey=eA==".into()),
        ..Default::default()
    };
    s.put_hub(hub.clone()).await.expect("put hub");
    let id = DeviceIdentity {
        hub_host_name: "hub.example".into(),
        device_id: "dev".into(),
        registration_id: "dev".into(),
        authentication_type: "sas".into(),
        x509_thumbprint: None,
        iot_edge: false,
        initial_twin: None,
        created_by: None,
    };
    s.put_identity(&id, Some((&Secret::new("p"), &Secret::new("q")))).await.expect("put identity");
    let old_id = s.master_key().id();
    let before = s.sealed_values().await.expect("sealed values");
    assert_eq!(before.len(), 8, "{before:?}");
    assert!(before.iter().all(|(_, _, v)| dps_crypto::sealed_key_id(v) == Some(old_id.as_str())));

    let (next, _) = MasterKey::generate();
    s.master_key().rotate_to(&next);
    // A write during the rotation is sealed with the new key at once.
    s.put_enrollment(sym_enrollment("during"), Precondition::None).await.expect("put enrollment");
    let first = s.reseal().await.expect("reseal");
    assert_eq!(first, dps_store::ResealReport { stale: 8, resealed: 8, unreadable: 0 });
    assert_eq!(s.reseal().await, Ok(dps_store::ResealReport::default()), "idempotent: nothing stale is left");
    s.master_key().retire_others();

    let after = s.sealed_values().await.expect("sealed values");
    assert_eq!(after.len(), 9);
    for (table, aad, v) in &after {
        assert_eq!(dps_crypto::sealed_key_id(v), Some(next.id().as_str()), "{table} {aad}");
        assert!(next.open(v, aad).is_ok(), "{table} {aad} opens with the new key alone");
    }
    assert_eq!(s.get_enrollment("dev").await, Ok(Some(sym_enrollment("dev"))));
    assert_eq!(s.get_enrollment("during").await, Ok(Some(sym_enrollment("during"))));
    assert!(matches!(s.get_group("g").await, Ok(Some(_))));
    assert_eq!(s.list_hubs().await, Ok(vec![hub]));
    let keys = s.identity_keys("hub.example", "dev").await.expect("identity keys").unwrap_or_else(|| panic!("no keys"));
    assert_eq!((keys.0.expose(), keys.1.expose()), ("p", "q"));
    let p = s.list_policies().await.expect("list policies");
    assert_eq!(p.first().map(|p| p.primary_key.expose().to_owned()).as_deref(), Some("UE9MSUNZLVBSSU1BUlk="));
    let t = s.get_tpm_challenge("tpm-dev").await.expect("get tpm challenge").unwrap_or_else(|| panic!("no challenge"));
    assert_eq!(t.key.expose(), "VFBNLUNIQUxMRU5HRS1LMQ==");
    let c = s.get_credential_policy("UPLOADED").await.expect("get credential policy").unwrap_or_else(|| panic!("no policy"));
    assert_eq!(c.key.as_ref().map(Secret::expose), Some("Q1JFRC1QT0xJQ1ktS0VZ"));
}

/// #15 item 4, recovery: after `forget_secrets` nothing sealed is left; enrollments without secrets survive.
async fn a_lost_key_reset_keeps_what_has_no_secret(s: &Store) {
    write_secrets(s).await;
    s.put_credential_policy(StoredCredentialPolicy { policy: CredentialPolicy::local("local"), key: None }, Precondition::None)
        .await
        .expect("put a local-CA policy");
    s.put_group(group("x509-line", "x509"), Precondition::None).await.expect("put group");
    let hub = LinkedHub {
        host_name: "hub.example".into(),
        connection_string: Some("HostName=hub.example;SharedAccessKey=eA==".into()),
        ..Default::default()
    };
    s.put_hub(hub.clone()).await.expect("put hub");
    assert!(s.forget_secrets().await.expect("forget secrets") >= 5);
    assert_eq!(s.sealed_values().await.map(|v| v.len()), Ok(0));
    assert_eq!(s.get_enrollment("dev").await, Ok(None), "a symmetric-key enrollment is useless without its keys");
    assert!(matches!(s.get_group("g").await, Ok(None)));
    assert!(matches!(s.get_group("x509-line").await, Ok(Some(_))), "an X.509 group survives");
    assert_eq!(
        s.list_hubs().await.map(|h| h.into_iter().map(|h| (h.host_name, h.connection_string)).collect::<Vec<_>>()),
        Ok(vec![("hub.example".to_owned(), None)])
    );
    assert_eq!(s.list_policies().await.map(|p| p.len()), Ok(0));
    assert!(matches!(s.get_tpm_challenge("tpm-dev").await, Ok(None)));
    assert_eq!(s.list_credential_policies().await.map(|p| p.len()), Ok(1), "only the local-CA policy survives");
}

/// Writes one secret of every kind: enrollment and group keys, a policy's keys, a TPM challenge's K1.
async fn write_secrets(s: &Store) {
    s.put_enrollment(sym_enrollment("dev"), Precondition::None).await.expect("put enrollment");
    s.put_group(group("g", "symmetricKey"), Precondition::None).await.expect("put group");
    s.put_policy(AccessPolicy {
        name: "p".into(),
        primary_key: Secret::new("UE9MSUNZLVBSSU1BUlk="),
        secondary_key: Secret::new("UE9MSUNZLVNFQ09OREFSWQ=="),
        rights: vec![],
    })
    .await
    .expect("put policy");
    s.put_tpm_challenge(&TpmChallenge {
        registration_id: "tpm-dev".into(),
        key: Secret::new("VFBNLUNIQUxMRU5HRS1LMQ=="),
        expires: chrono::DateTime::UNIX_EPOCH,
        operation_id: None,
        endorsement_key: vec![1],
        storage_root_key: vec![2],
    })
    .await
    .expect("put a TPM challenge");
    let uploaded = CredentialPolicy { issuer: IssuerKind::Uploaded, ..CredentialPolicy::local("uploaded") };
    s.put_credential_policy(
        StoredCredentialPolicy { policy: uploaded, key: Some(Secret::new("Q1JFRC1QT0xJQ1ktS0VZ")) },
        Precondition::None,
    )
    .await
    .expect("put a credential policy with an uploaded CA's key");
}

/// `text` (everything the database holds) has the documents but none of [`write_secrets`]' secrets.
fn assert_no_secret_in(text: &str) {
    assert!(text.contains("b12"), "the database should hold the documents");
    for secret in [
        "cHJpbWFyeS1rZXktMTIzNDU2",
        "c2Vjb25kYXJ5LWtleS0xMjM0",
        "Z3JvdXAta2V5LXByaW1hcnkx",
        "UE9MSUNZLVBSSU1BUlk=",
        "VFBNLUNIQUxMRU5HRS1LMQ==",
        "Q1JFRC1QT0xJQ1ktS0VZ",
    ] {
        assert!(!text.contains(secret), "{secret} found in clear");
    }
}

/// Every byte of the SQLite files in `dir`.
fn sqlite_text(dir: &std::path::Path) -> String {
    let mut all = Vec::new();
    for f in std::fs::read_dir(dir).expect("read dir").flatten() {
        all.extend(std::fs::read(f.path()).expect("reads the file"));
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// Every row of every table of the PostgreSQL database at `url`, as text.
async fn postgres_text(url: &str) -> String {
    let pool = sqlx::PgPool::connect(url).await.expect("connects");
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'").fetch_all(&pool).await.expect("fetch all");
    let mut all = String::new();
    for t in tables {
        let sql = format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{t}\" t");
        let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.expect("fetch one");
        all.push_str(&rows);
        all.push('\n');
    }
    pool.close().await;
    all
}

/// Secrets never reach the database file in clear text.
#[tokio::test]
async fn secrets_are_not_stored_in_clear() {
    let (s, dir) = sqlite_file().await;
    let s = Store::from(s);
    write_secrets(&s).await;
    s.close().await;
    assert_no_secret_in(&sqlite_text(dir.path()));
}

/// PostgreSQL: no secret in any column of any table.
#[tokio::test]
async fn postgres_secrets_are_not_stored_in_clear() {
    let (s, url) = postgres().await;
    write_secrets(&s).await;
    s.close().await;
    assert_no_secret_in(&postgres_text(&url).await);
}

/// Issue #14: the custom allocation webhook's function key (`?code=…`) is sealed like the keys — single writes
/// and bulk writes, individual enrollments and X.509 groups (no symmetric keys) — and reads give the URL back
/// whole.
async fn write_and_read_webhook_urls(s: &Store) {
    let custom = |url: &str| serde_json::json!({ "webhookUrl": url, "apiVersion": "2021-10-01" });
    let url = |n: u32| format!("https://fn.example.net/api/allocate?code=FUNCTION-KEY-{n}&clientId=default");
    let mut e = sym_enrollment("dev-w");
    e.custom_allocation_definition = serde_json::from_value(custom(&url(1))).ok();
    let mut g = group("x509-w", "x509");
    g.custom_allocation_definition = serde_json::from_value(custom(&url(2))).ok();
    let mut bulk = group("bulk-w", "symmetricKey");
    bulk.custom_allocation_definition = serde_json::from_value(custom(&url(3))).ok();
    let plain = |mut g: EnrollmentGroup| {
        g.custom_allocation_definition = serde_json::from_value(custom("https://fn.example.net/api/open")).ok();
        g
    };
    let written = s.put_enrollment(e.clone(), Precondition::None).await.unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(written.custom_allocation_definition.map(|d| d.webhook_url), Some(url(1)), "the answer has the whole URL");
    s.put_group(g, Precondition::None).await.unwrap_or_else(|err| panic!("{err}"));
    let answers = s.put_groups(vec![(bulk, Precondition::None), (plain(group("open-w", "x509")), Precondition::None)]).await;
    let answers = answers.unwrap_or_else(|err| panic!("{err}"));
    let bulk_url = answers.first().and_then(|a| a.as_ref().ok()).and_then(|g| g.custom_allocation_definition.clone());
    assert_eq!(bulk_url.map(|d| d.webhook_url), Some(url(3)));

    let read = s.get_enrollment("dev-w").await.ok().flatten().unwrap_or_else(|| panic!("dev-w"));
    assert_eq!(read.custom_allocation_definition.map(|d| d.webhook_url), Some(url(1)));
    assert!(read.attestation.symmetric_key.and_then(|k| k.primary_key).is_some(), "the keys still read");
    let read = s.get_group("x509-w").await.ok().flatten().unwrap_or_else(|| panic!("x509-w"));
    assert_eq!(read.custom_allocation_definition.map(|d| d.webhook_url), Some(url(2)));
    assert!(read.attestation.symmetric_key.is_none(), "an X.509 group gets no symmetric key from the sealed query");
    let read = s.get_group("open-w").await.ok().flatten().unwrap_or_else(|| panic!("open-w"));
    assert_eq!(read.custom_allocation_definition.map(|d| d.webhook_url), Some("https://fn.example.net/api/open".to_owned()));
    s.close().await;
}

fn assert_function_keys_sealed(text: &str) {
    assert!(text.contains("fn.example.net/api/allocate"), "the URL without its query stays readable");
    assert!(!text.contains("FUNCTION-KEY"), "a function key was stored in clear");
}

#[tokio::test]
async fn webhook_function_keys_are_sealed_at_rest() {
    let (s, dir) = sqlite_file().await;
    write_and_read_webhook_urls(&s.into()).await;
    assert_function_keys_sealed(&sqlite_text(dir.path()));
}

#[tokio::test]
async fn postgres_webhook_function_keys_are_sealed_at_rest() {
    let (s, url) = postgres().await;
    write_and_read_webhook_urls(&s).await;
    assert_function_keys_sealed(&postgres_text(&url).await);
}

/// Service-wide settings: absent until written, then the last value written.
async fn settings_round_trip(s: &Store) {
    use dps_store::Settings;
    assert_eq!(s.get_setting("id_scope").await, Ok(None));
    s.put_setting("id_scope", "0ne00000001").await.expect("put setting");
    s.put_setting("other", "x").await.expect("put setting");
    s.put_setting("id_scope", "0ne00000002").await.expect("put setting");
    assert_eq!(s.get_setting("id_scope").await, Ok(Some("0ne00000002".to_owned())));
    assert_eq!(s.get_setting("ID_SCOPE").await, Ok(None), "setting keys are the service's own, compared exactly");
}

fn at(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::<chrono::Utc>::UNIX_EPOCH + chrono::Duration::days(20_000) + chrono::Duration::seconds(secs)
}

/// Issue #15 item 2: console sessions live in the store (any instance checks a session another opened).
async fn console_sessions_are_shared_and_end(s: &Store) {
    use dps_store::ConsoleAccess;
    let ok = |r: StoreResult<()>| r.expect("r");
    ok(s.open_session("a", at(100), at(0)).await);
    ok(s.open_session("b", at(200), at(0)).await);
    assert_eq!(s.session_expiry("a").await, Ok(Some(at(100))));
    assert_eq!(s.session_expiry("A").await, Ok(None), "token hashes are compared exactly");
    ok(s.close_session("a").await);
    assert_eq!(s.session_expiry("a").await, Ok(None));
    ok(s.open_session("c", at(400), at(300)).await);
    assert_eq!(s.session_expiry("b").await, Ok(None), "a new session removes the ended ones");
    ok(s.close_all_sessions().await);
    assert_eq!(s.session_expiry("c").await, Ok(None));
}

/// Sign-in attempts: a fixed window per key from its first attempt; over the limit nothing is counted.
async fn sign_in_attempts_are_counted_per_window(s: &Store) {
    use dps_store::{AttemptWindow, ConsoleAccess};
    let minute = chrono::Duration::minutes(1);
    let count = |key: &'static str, secs| async move { s.count_attempt(key, 2, at(secs), minute).await.expect("count attempt") };
    assert_eq!(count("ip:10.0.0.1", 0).await, AttemptWindow { count: 1, since: at(0), admitted: true });
    assert_eq!(count("ip:10.0.0.1", 10).await, AttemptWindow { count: 2, since: at(0), admitted: true });
    assert_eq!(count("ip:10.0.0.1", 20).await, AttemptWindow { count: 2, since: at(0), admitted: false });
    assert!(count("ip:10.0.0.2", 20).await.admitted, "another key has its own window");
    assert_eq!(count("ip:10.0.0.1", 60).await, AttemptWindow { count: 1, since: at(60), admitted: true }, "a new window");
    s.forget_attempts("ip:10.0.0.1").await.expect("forget attempts");
    assert_eq!(count("ip:10.0.0.1", 61).await, AttemptWindow { count: 1, since: at(61), admitted: true });
}

/// Attempts counted at once (several instances) never pass the limit together.
async fn concurrent_sign_in_attempts_never_pass_the_limit(s: &Store) {
    use dps_store::ConsoleAccess;
    let minute = chrono::Duration::minutes(1);
    let tries = (0..20).map(|_| s.count_attempt("global", 5, at(0), minute));
    let admitted = futures_util::future::join_all(tries).await.into_iter().filter(|w| w.as_ref().is_ok_and(|w| w.admitted)).count();
    assert_eq!(admitted, 5);
}

/// What [`quarantine_checks`] corrupts, in SQL both backends run: a document that does not parse, a sealed
/// secret that does not open.
const CORRUPTIONS: [&str; 2] = [
    "UPDATE enrollments SET doc = '{\"registrationId\": 42' WHERE id_key = 'bad-doc'",
    "UPDATE enrollment_groups SET secrets = 'not-a-sealed-secret' WHERE id_key = 'group-bad'",
];

async fn quarantine_seed(s: &Store) {
    for id in ["bad-doc", "good"] {
        s.put_enrollment(sym_enrollment(id), Precondition::None).await.expect("put enrollment");
    }
    s.put_group(group("group-bad", "symmetricKey"), Precondition::None).await.expect("put group");
}

/// After [`CORRUPTIONS`]: the unreadable rows are moved aside and listed, the rest serves.
async fn quarantine_checks(s: &Store) {
    use dps_store::Quarantine;
    let page = PageRequest { filter: Vec::new(), continuation: None, max_items: 100, search: None };
    let listed = s.query_enrollments(page).await.expect("query enrollments");
    assert_eq!(listed.items.iter().map(|e| e.registration_id.as_str()).collect::<Vec<_>>(), ["good"]);
    assert_eq!(s.get_enrollment("bad-doc").await, Ok(None), "moved aside");
    assert_eq!(s.get_group("group-bad").await, Ok(None), "a secret that does not open: moved aside");
    assert_eq!(s.symmetric_key_groups().await.map(|g| g.len()), Ok(0));
    let q = s.quarantined().await.expect("quarantined");
    let mut rows: Vec<(&str, &str)> = q.iter().map(|r| (r.table.as_str(), r.key.as_str())).collect();
    rows.sort();
    assert_eq!(rows, [("enrollment_groups", "group-bad"), ("enrollments", "bad-doc")]);
    assert!(q.iter().all(|r| !r.reason.is_empty()));
}

#[tokio::test]
async fn unreadable_rows_are_quarantined() {
    let (s, dir) = sqlite_file().await;
    let s = Store::from(s);
    quarantine_seed(&s).await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("dps.sqlite").display())).await.expect("connects");
    for sql in CORRUPTIONS {
        sqlx::query(sql).execute(&pool).await.expect("execute");
    }
    pool.close().await;
    quarantine_checks(&s).await;
}

#[tokio::test]
async fn postgres_unreadable_rows_are_quarantined() {
    let (s, url) = postgres().await;
    quarantine_seed(&s).await;
    let pool = sqlx::PgPool::connect(&url).await.expect("connects");
    for sql in CORRUPTIONS {
        sqlx::query(sql).execute(&pool).await.expect("execute");
    }
    pool.close().await;
    quarantine_checks(&s).await;
}

/// CA certificates round-trip with their etag rules.
async fn ca_certificates_round_trip(s: &Store) {
    let ca = CaCertificate {
        name: "Plant-Root".into(),
        certificate: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
        info: None,
        is_verified: false,
        verification_code: Some("ABC".into()),
        created_date_time_utc: None,
        last_updated_date_time_utc: None,
        etag: Some("\"c1\"".into()),
    };
    s.put_ca(ca.clone(), Precondition::NotExists).await.expect("put ca");
    assert_eq!(s.get_ca("plant-root").await, Ok(Some(ca.clone())));
    assert_eq!(s.put_ca(ca.clone(), Precondition::NotExists).await.map(|_| ()), Err(StoreError::Conflict));
    assert_eq!(s.put_ca(ca.clone(), Precondition::Etag("\"old\"".into())).await.map(|_| ()), Err(StoreError::PreconditionFailed));
    assert_eq!(s.list_cas().await.map(|v| v.len()), Ok(1));
    s.delete_ca("PLANT-ROOT", Precondition::Etag("\"c1\"".into())).await.expect("delete ca");
    assert_eq!(s.get_ca("plant-root").await, Ok(None));
}

fn operation(id: &str, device: &str, at: chrono::DateTime<chrono::Utc>) -> Operation {
    Operation::assigning(id, device, EnrollmentRef::Individual(device.into()), AttestationType::SymmetricKey, at)
}

fn lease(owner: &str, until: chrono::DateTime<chrono::Utc>) -> dps_core::ports::Lease {
    dps_core::ports::Lease { owner: owner.into(), until }
}

fn assigning_record(id: &str) -> RegistrationRecord {
    let mut r = record(id, None);
    r.state.status = Some(RegistrationStatus::Assigning);
    r
}

fn now() -> chrono::DateTime<chrono::Utc> {
    dps_core::Clock::now(&dps_core::SystemClock)
}

/// 409203 is a store constraint: a second `assigning` operation of the same device (any case) is refused and
/// writes nothing — neither the operation nor the record; once the first is finished, the device may begin again.
async fn one_operation_assigning_per_device(s: &Store) {
    let t = now();
    let l = lease("me", t + chrono::Duration::seconds(30));
    s.begin_registration(&operation("op-1", "dev-1", t), &assigning_record("dev-1"), &l).await.expect("begin registration");
    let mut other = assigning_record("DEV-1");
    other.trace = Some(serde_json::json!({ "why": "second" }));
    assert_eq!(s.begin_registration(&operation("op-2", "DEV-1", t), &other, &l).await, Err(StoreError::Conflict));
    assert_eq!(s.get_operation("op-2").await, Ok(None), "the refused operation is not written");
    let rec = s.get_registration("dev-1").await.expect("get registration").unwrap_or_else(|| panic!("record"));
    assert_eq!(rec.trace, Some(serde_json::json!({ "why": "test" })), "nor its record");
    // Another device is free.
    s.begin_registration(&operation("op-3", "dev-2", t), &assigning_record("dev-2"), &l).await.expect("begin registration");
    let mut done = operation("op-1", "dev-1", t);
    done.status = RegistrationStatus::Assigned;
    assert_eq!(s.finish_registration(&done, &record("dev-1", None), None, "me").await, Ok(true));
    s.begin_registration(&operation("op-4", "dev-1", t), &assigning_record("dev-1"), &l).await.expect("begin registration");
}

/// The outcome is written — operation and record together — only by the lease's owner, and only once.
async fn finishing_needs_the_lease(s: &Store) {
    let t = now();
    s.begin_registration(&operation("op-f", "dev-f", t), &assigning_record("dev-f"), &lease("me", t + chrono::Duration::seconds(30)))
        .await
        .expect("begin registration");
    let mut done = operation("op-f", "dev-f", t);
    done.status = RegistrationStatus::Assigned;
    let mut rec = record("dev-f", None);
    rec.state.assigned_hub = Some("hub-a".into());
    assert_eq!(s.finish_registration(&done, &rec, None, "someone-else").await, Ok(false));
    assert_eq!(s.get_operation("op-f").await.map(|o| o.map(|o| o.status)), Ok(Some(RegistrationStatus::Assigning)));
    assert!(!s.renew_lease("op-f", &lease("someone-else", t)).await.unwrap_or(true), "only the owner renews");
    assert_eq!(s.renew_lease("op-f", &lease("me", t + chrono::Duration::seconds(60))).await, Ok(true));
    assert_eq!(s.finish_registration(&done, &rec, None, "me").await, Ok(true));
    assert_eq!(s.get_operation("op-f").await.map(|o| o.map(|o| o.status)), Ok(Some(RegistrationStatus::Assigned)));
    let stored = s.get_registration("dev-f").await.expect("get registration").unwrap_or_else(|| panic!("record"));
    assert_eq!(stored.state.assigned_hub.as_deref(), Some("hub-a"));
    assert_eq!(s.finish_registration(&done, &rec, None, "me").await, Ok(false), "a finished operation is not finished twice");
    assert_eq!(s.renew_lease("op-f", &lease("me", t)).await, Ok(false));
}

/// The sweeper's claim: operations still assigning whose lease ended (or that never had one), oldest first,
/// at most `limit`; a claimed one belongs to the claimer, and a live lease is left alone.
async fn expired_leases_are_claimed_oldest_first(s: &Store) {
    let t = now();
    let secs = chrono::Duration::seconds;
    for (i, until) in [(1, t - secs(5)), (2, t + secs(30)), (3, t - secs(1))] {
        s.begin_registration(
            &operation(&format!("op-{i}"), &format!("dev-{i}"), t + secs(i)),
            &assigning_record(&format!("dev-{i}")),
            &lease("old", until),
        )
        .await
        .expect("begin registration");
    }
    s.put_operation(&operation("op-0", "dev-0", t)).await.expect("put operation");
    let claimed = s.claim_operations(&lease("new", t + secs(30)), t, 2).await.expect("claim operations");
    assert_eq!(claimed.iter().map(|o| o.operation_id.as_str()).collect::<Vec<_>>(), ["op-0", "op-1"]);
    let rest = s.claim_operations(&lease("new", t + secs(30)), t, 10).await.expect("claim operations");
    assert_eq!(rest.iter().map(|o| o.operation_id.as_str()).collect::<Vec<_>>(), ["op-3"], "op-2's lease is alive");
    assert!(s.claim_operations(&lease("third", t + secs(30)), t, 10).await.expect("claim operations").is_empty());
    let mut done = operation("op-1", "dev-1", t);
    done.status = RegistrationStatus::Failed;
    assert_eq!(s.finish_registration(&done, &record("dev-1", None), None, "old").await, Ok(false), "the old owner lost it");
    assert_eq!(s.finish_registration(&done, &record("dev-1", None), None, "new").await, Ok(true));
    // At start-up a process that owns the store alone takes everything still assigning.
    let all = s.claim_operations(&lease("restart", t + secs(30)), chrono::DateTime::<chrono::Utc>::MAX_UTC, 10).await;
    assert_eq!(all.map(|v| v.len()), Ok(3));
}

/// Group commit: many writes at once all land, each with its own outcome (one conflicting write fails alone).
async fn concurrent_writes_all_commit(s: &Store) {
    let t = now();
    let l = lease("me", t + chrono::Duration::seconds(30));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (s, l) = (s.clone(), l.clone());
        // Devices 0..100 twice: one of each pair conflicts.
        let device = format!("dev-{}", i % 100);
        tasks.push(tokio::spawn(async move {
            s.begin_registration(&operation(&format!("op-{i}"), &device, t), &assigning_record(&device), &l).await
        }));
    }
    let mut ok = 0;
    let mut conflicts = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => ok += 1,
            Err(StoreError::Conflict) => conflicts += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, conflicts), (100, 100));
    let page = PageRequest { filter: Vec::new(), continuation: None, max_items: 1000, search: None };
    assert_eq!(s.query_registrations(None, page).await.map(|p| p.items.len()), Ok(100));
}

fn identity(twin: Option<InitialTwin>) -> IdentityWrite {
    IdentityWrite {
        identity: DeviceIdentity {
            hub_host_name: "hub".into(),
            device_id: "dev-i".into(),
            registration_id: "dev-i".into(),
            authentication_type: "sas".into(),
            x509_thumbprint: None,
            iot_edge: false,
            initial_twin: twin,
            created_by: None,
        },
        keys: Some((Secret::new("cHJpbWFyeQ=="), Secret::new("c2Vjb25kYXJ5"))),
    }
}

/// The finish step writes the built-in registry's identity with the operation and the record — or, when the
/// lease is lost, none of them; an identity written without a twin keeps the twin stored for it.
async fn the_identity_is_written_with_the_outcome(s: &Store) {
    let t = now();
    let twin = InitialTwin { tags: Some(serde_json::from_str(r#"{"line":"7"}"#).expect("tags")), properties: None };
    for (op, owner, with_twin) in [("op-i1", "me", true), ("op-i2", "me", false)] {
        s.begin_registration(&operation(op, "dev-i", t), &assigning_record("dev-i"), &lease("me", t + chrono::Duration::seconds(30)))
            .await
            .expect("begin registration");
        let mut done = operation(op, "dev-i", t);
        done.status = RegistrationStatus::Assigned;
        let write = identity(with_twin.then(|| twin.clone()));
        assert_eq!(s.finish_registration(&done, &record("dev-i", None), Some(&write), "someone-else").await, Ok(false));
        if op == "op-i1" {
            assert_eq!(s.get_identity("hub", "dev-i").await, Ok(None), "a lost lease writes no identity");
        }
        assert_eq!(s.finish_registration(&done, &record("dev-i", None), Some(&write), owner).await, Ok(true));
        let stored = s.get_identity("hub", "dev-i").await.expect("get identity").unwrap_or_else(|| panic!("identity"));
        assert_eq!(stored.initial_twin.as_ref(), Some(&twin), "{op}: the twin is written, then kept");
        let keys = s.identity_keys("hub", "dev-i").await.expect("identity keys").unwrap_or_else(|| panic!("keys"));
        assert_eq!(keys.0.expose(), "cHJpbWFyeQ==");
    }
}

/// Caches trust an entry only while the version they read it under stands: every write of an enrollment,
/// group, hub or CA changes it — also a refused one — and nothing else does.
async fn every_configuration_write_changes_the_version(s: &Store) {
    let mut last = s.config_version();
    let mut changed = |what: &str| {
        let v = s.config_version();
        assert_ne!(v, last, "{what} changes the version");
        last = v;
    };
    s.put_enrollment(sym_enrollment("v-1"), Precondition::None).await.expect("put enrollment");
    changed("an enrollment write");
    let _ = s.put_enrollment(sym_enrollment("v-1"), Precondition::NotExists).await;
    changed("a refused enrollment write");
    s.delete_enrollment("v-1", Precondition::None).await.expect("delete enrollment");
    changed("an enrollment delete");
    s.put_enrollments(vec![(sym_enrollment("v-2"), Precondition::None)]).await.expect("put enrollments");
    changed("a bulk write");
    s.put_group(group("g-v", "symmetricKey"), Precondition::None).await.expect("put group");
    changed("a group write");
    s.delete_group("g-v", Precondition::None).await.expect("delete group");
    changed("a group delete");
    let hub = LinkedHub { host_name: "h.example".into(), ..Default::default() };
    s.put_hub(hub).await.expect("put hub");
    changed("a hub write");
    s.delete_hub("h.example").await.expect("delete hub");
    changed("a hub delete");
    let _ = s.delete_ca("none", Precondition::None).await;
    changed("a CA delete");
    let before = s.config_version();
    s.put_registration(record("dev-v", None)).await.expect("put registration");
    s.put_operation(&operation("op-v", "dev-v", now())).await.expect("put operation");
    assert_eq!(s.config_version(), before, "registrations and operations are not configuration");
}

/// The engine reads enrollments, groups and hubs through `ConfigCache`: a write shows in the next read,
/// whether it went through the cache or straight to the store.
async fn the_configuration_cache_follows_every_write(s: &Store) {
    let cache = dps_core::cache::ConfigCache::new(Arc::new(s.clone()));
    assert_eq!(cache.get_enrollment("c-1").await, Ok(None));
    s.put_enrollment(sym_enrollment("c-1"), Precondition::None).await.expect("put enrollment");
    assert!(cache.get_enrollment("C-1").await.expect("get enrollment").is_some(), "a cached absence is dropped");
    let mut e = sym_enrollment("c-1");
    e.device_id = Some("renamed".into());
    cache.put_enrollment(e, Precondition::None).await.expect("put enrollment");
    let got = cache.get_enrollment("c-1").await.expect("get enrollment").unwrap_or_else(|| panic!("enrollment"));
    assert_eq!(got.device_id.as_deref(), Some("renamed"));
    assert!(got.attestation.symmetric_key.and_then(|k| k.primary_key).is_some(), "keys come back");

    assert_eq!(cache.symmetric_key_group_keys().await.map(|g| g.len()), Ok(0));
    s.put_group(group("g-c", "symmetricKey"), Precondition::None).await.expect("put group");
    let keys = cache.symmetric_key_group_keys().await.expect("symmetric key group keys");
    assert_eq!(keys.iter().map(|g| g.group.enrollment_group_id.as_str()).collect::<Vec<_>>(), ["g-c"]);
    assert!(!keys[0].primary.is_empty(), "decoded");
    s.delete_group("g-c", Precondition::None).await.expect("delete group");
    assert_eq!(cache.symmetric_key_group_keys().await.map(|g| g.len()), Ok(0));
    assert_eq!(cache.get_group("g-c").await, Ok(None));

    assert_eq!(cache.list_hubs().await.map(|h| h.len()), Ok(0));
    s.put_hub(LinkedHub { host_name: "c.example".into(), ..Default::default() }).await.expect("put hub");
    assert_eq!(cache.list_hubs().await.map(|h| h.len()), Ok(1));
    assert_eq!(cache.list_cas().await.map(|c| c.len()), Ok(0));
}

fn etag(id: &str, etag: &str) -> IndividualEnrollment {
    let mut e = sym_enrollment(id);
    e.etag = Some(etag.into());
    e
}

/// `put_enrollments` / `put_groups`: each item under its own precondition, answered in order, as if the items
/// were written one after the other (a later item sees an earlier one); only the accepted ones are written.
async fn batch_writes_answer_per_item_in_order(s: &Store) {
    let ok = |r: StoreResult<()>| r.expect("r");
    ok(s.put_enrollment(etag("b-exists", "\"e1\""), Precondition::None).await.map(|_| ()));
    ok(s.put_enrollment(etag("b-etag", "\"e1\""), Precondition::None).await.map(|_| ()));
    ok(s.put_enrollment(etag("b-replace", "\"e1\""), Precondition::None).await.map(|_| ()));
    let created = s.get_enrollment("b-replace").await.ok().flatten().and_then(|e| e.created_date_time_utc);
    let mut later = etag("B-Replace", "\"e2\"");
    later.created_date_time_utc = Some(now());
    let items = vec![
        (etag("b-new", "\"n1\""), Precondition::NotExists),
        (etag("B-EXISTS", "\"n2\""), Precondition::NotExists),
        (etag("b-etag", "\"n3\""), Precondition::Etag("\"stale\"".into())),
        (later, Precondition::Etag("e1".into())),
        (etag("b-dup", "\"d1\""), Precondition::NotExists),
        (etag("b-dup", "\"d2\""), Precondition::NotExists),
        (etag("b-dup", "\"d3\""), Precondition::Etag("\"d1\"".into())),
        (etag("b-missing", "\"m1\""), Precondition::Exists),
    ];
    let results = s.put_enrollments(items).await.expect("put enrollments");
    let outcome: Vec<Result<String, StoreError>> = results.into_iter().map(|r| r.map(|e| e.etag.unwrap_or_default())).collect();
    assert_eq!(
        outcome,
        vec![
            Ok("\"n1\"".into()),
            Err(StoreError::Conflict),
            Err(StoreError::PreconditionFailed),
            Ok("\"e2\"".into()),
            Ok("\"d1\"".into()),
            Err(StoreError::Conflict),
            Ok("\"d3\"".into()),
            Err(StoreError::PreconditionFailed),
        ]
    );
    let stored = |id: &'static str| async move { s.get_enrollment(id).await.expect("get enrollment") };
    assert_eq!(stored("b-new").await.and_then(|e| e.etag).as_deref(), Some("\"n1\""));
    assert_eq!(stored("b-exists").await.and_then(|e| e.etag).as_deref(), Some("\"e1\""), "a refused item writes nothing");
    assert_eq!(stored("b-etag").await.and_then(|e| e.etag).as_deref(), Some("\"e1\""));
    let replaced = stored("b-replace").await.unwrap_or_else(|| panic!("b-replace is there"));
    assert_eq!((replaced.etag.as_deref(), replaced.created_date_time_utc), (Some("\"e2\""), created), "the created time is kept");
    assert_eq!(stored("b-dup").await.and_then(|e| e.etag).as_deref(), Some("\"d3\""));
    assert_eq!(stored("b-missing").await, None);
    let keys = stored("b-new").await.and_then(|e| e.attestation.symmetric_key).and_then(|k| k.primary_key);
    assert_eq!(keys.as_deref(), Some("cHJpbWFyeS1rZXktMTIzNDU2"), "keys are sealed and open again");

    let results = s
        .put_groups(vec![(group("bg-1", "symmetricKey"), Precondition::NotExists), (group("BG-1", "x509"), Precondition::NotExists)])
        .await
        .expect("put groups");
    assert_eq!(
        results.into_iter().map(|r| r.map(|g| g.enrollment_group_id)).collect::<Vec<_>>(),
        vec![Ok("bg-1".into()), Err(StoreError::Conflict)]
    );
    assert_eq!(s.symmetric_key_groups().await.map(|g| g.len()), Ok(1));
    assert_eq!(s.put_enrollments(Vec::new()).await, Ok(Vec::new()));
}

/// A batch as large as a bulk import sends: every item written, keys sealed per item.
async fn batch_of_ten_thousand_writes(s: &Store) {
    let items: Vec<_> = (0..10_000).map(|i| (sym_enrollment(&format!("many-{i:05}")), Precondition::NotExists)).collect();
    let results = s.put_enrollments(items).await.expect("put enrollments");
    assert_eq!(results.len(), 10_000);
    assert!(results.iter().all(Result::is_ok));
    let page = PageRequest { filter: Vec::new(), continuation: None, max_items: 1, search: None };
    assert_eq!(s.query_enrollments(page).await.map(|p| p.total), Ok(10_000));
    let last = s.get_enrollment("MANY-09999").await.ok().flatten().and_then(|e| e.attestation.symmetric_key).and_then(|k| k.secondary_key);
    assert_eq!(last.as_deref(), Some("c2Vjb25kYXJ5LWtleS0xMjM0"));
}

/// SQLite: when a write statement of a batch fails, the batch is done again item by item and only the
/// failing item fails (a trigger stands in for a failure of the database).
#[tokio::test]
async fn a_failing_row_fails_alone_in_a_batch() {
    let (s, dir) = sqlite_file().await;
    let url = format!("sqlite://{}", dir.path().join("dps.sqlite").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("connects");
    sqlx::query("CREATE TRIGGER refuse BEFORE INSERT ON enrollments WHEN NEW.id_key = 'bad' BEGIN SELECT RAISE(ABORT, 'refused'); END")
        .execute(&pool)
        .await
        .expect("execute");
    pool.close().await;
    let items = ["a", "bad", "c"].map(|id| (sym_enrollment(id), Precondition::NotExists)).to_vec();
    let results = s.put_enrollments(items).await.expect("put enrollments");
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(matches!(&results[1], Err(StoreError::Backend(m)) if m.message().contains("refused")), "{results:?}");
    for (id, there) in [("a", true), ("bad", false), ("c", true)] {
        assert_eq!(s.get_enrollment(id).await.map(|e| e.is_some()), Ok(there), "{id}");
    }
}

/// PostgreSQL, several processes on one database (issue #15 item 2's ground): a configuration write of one
/// store changes the other's version (the `config_version` row, `NOTIFY dps_config`), so the other's cache
/// drops what it held. The wait is for the notification, bounded only against a hang.
#[tokio::test]
async fn postgres_another_store_configuration_writes_change_the_version() {
    let url = dps_store::testing::database_url().await;
    let key = Arc::new(MasterKey::generate().0);
    let writer = PgStore::open(&url, Arc::clone(&key)).await.expect("opens");
    let reader = PgStore::open(&url, key).await.expect("opens");
    let cache = dps_core::cache::ConfigCache::new(Arc::new(reader.clone()));
    assert_eq!(cache.get_enrollment("shared").await, Ok(None), "an absence, cached");
    for round in 0..3 {
        let mut changes = reader.watch_config_version();
        let before = reader.config_version();
        let mut e = sym_enrollment("shared");
        e.device_id = Some(format!("round-{round}"));
        writer.put_enrollment(e, Precondition::None).await.expect("put enrollment");
        tokio::time::timeout(std::time::Duration::from_secs(60), changes.changed())
            .await
            .unwrap_or_else(|_| panic!("no notification of the other store's write"))
            .expect("the change notifications go on");
        assert_ne!(reader.config_version(), before, "round {round}");
        let got = cache.get_enrollment("SHARED").await.expect("get enrollment").and_then(|e| e.device_id);
        assert_eq!(got, Some(format!("round-{round}")), "the other store's cache reads the new enrollment");
    }
    writer.close().await;
    reader.close().await;
}

/// PostgreSQL: the same, with a trigger refusing one row (the `UNNEST` upsert fails, the items are written one
/// by one in savepoints).
#[tokio::test]
async fn postgres_a_failing_row_fails_alone_in_a_batch() {
    let (s, url) = postgres().await;
    let pool = sqlx::PgPool::connect(&url).await.expect("connects");
    sqlx::raw_sql(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.id_key = 'bad' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON enrollments FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .execute(&pool)
    .await
    .expect("execute");
    pool.close().await;
    let items = ["a", "bad", "c"].map(|id| (sym_enrollment(id), Precondition::NotExists)).to_vec();
    let results = s.put_enrollments(items).await.expect("put enrollments");
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(matches!(&results[1], Err(StoreError::Backend(m)) if m.message().contains("refused")), "{results:?}");
    for (id, there) in [("a", true), ("bad", false), ("c", true)] {
        assert_eq!(s.get_enrollment(id).await.map(|e| e.is_some()), Ok(there), "{id}");
    }
}

/// #15 item 5: each purge batch walks the partial index of finished operations (no scan of the table or of
/// the (status, updated) index past the recent rows).
#[tokio::test]
async fn the_purge_walks_the_index_of_finished_operations_on_sqlite() {
    let (s, dir) = sqlite_file().await;
    s.close().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("dps.sqlite").display())).await.expect("connects");
    let rows: Vec<(i64, i64, i64, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {}", dps_store::purge_sql::SQLITE)))
            .bind("2026-01-01T00:00:00Z")
            .bind(500)
            .fetch_all(&pool)
            .await
            .expect("fetch all");
    let plan: Vec<String> = rows.into_iter().map(|r| r.3).collect();
    assert!(
        plan.iter().any(|p| p.contains("USING COVERING INDEX operations_finished") || p.contains("USING INDEX operations_finished")),
        "{plan:?}"
    );
    assert!(!plan.iter().any(|p| p.starts_with("SCAN operations") && !p.contains("INDEX")), "{plan:?}");
}

#[tokio::test]
async fn the_purge_walks_the_index_of_finished_operations_on_postgres() {
    let (s, url) = postgres().await;
    drop(s);
    let pool = sqlx::PgPool::connect(&url).await.expect("connects");
    let mut conn = pool.acquire().await.expect("acquire");
    // An empty table costs the same either way: ask the planner what it does when a scan would be dear.
    sqlx::query("SET enable_seqscan = off").execute(&mut *conn).await.expect("execute");
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {}", dps_store::purge_sql::POSTGRES)))
        .bind("2026-01-01T00:00:00Z")
        .bind(500i64)
        .fetch_all(&mut *conn)
        .await
        .expect("fetch all");
    assert!(plan.iter().any(|p| p.contains("operations_finished")), "{plan:?}");
}
