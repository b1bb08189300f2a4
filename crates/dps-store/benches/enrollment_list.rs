//! The console's enrollment list at 100,000 enrollments (issue: console, "list with search and paging that
//! stays fast at 100,000"): first page, a page deep into the list (keyset continuation), a search, and a
//! search with no match — each with the total count the page shows. The store is filled once per run
//! (≈ 20 s) in a temporary SQLite file, as `dps serve` keeps it.
//!
//! `cargo bench -p dps-store --bench enrollment_list`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use dps_core::model::{PageRequest, Precondition};
use dps_core::ports::EnrollmentStore;
use dps_crypto::MasterKey;
use dps_proto::IndividualEnrollment;
use dps_store::SqliteStore;

const ENROLLMENTS: usize = 100_000;
/// `cargo test --all-targets` runs benches once as a smoke test (without `--bench`): a small store suffices.
const ENROLLMENTS_SMOKE: usize = 1_000;
const PAGE: usize = 50;

fn enrollment(i: usize) -> IndividualEnrollment {
    let line = ["press", "oven", "robot", "scale"][i % 4];
    serde_json::from_value(serde_json::json!({
        "registrationId": format!("{line}-{i:06}"),
        "attestation": { "type": "symmetricKey", "symmetricKey": { "primaryKey": "cHJpbWFyeS1rZXktMTIzNDU2", "secondaryKey": "c2Vjb25kYXJ5LWtleS0xMjM0" } },
        "initialTwin": { "tags": { "line": line } }
    }))
    .expect("deserialises")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("constructs");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let count = if std::env::args().any(|a| a == "--bench") { ENROLLMENTS } else { ENROLLMENTS_SMOKE };
    let store = rt.block_on(async {
        let (key, _) = MasterKey::generate();
        let s = SqliteStore::open(&dir.path().join("dps.sqlite"), Arc::new(key)).await.expect("opens");
        let started = std::time::Instant::now();
        for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
            let puts = chunk.iter().map(|&i| s.put_enrollment(enrollment(i), Precondition::None));
            for r in futures_util::future::join_all(puts).await {
                r.expect("lists a page of enrollments");
            }
        }
        eprintln!("filled {count} enrollments in {:?}", started.elapsed());
        s
    });
    let page = |continuation: Option<String>, search: Option<&str>| PageRequest {
        continuation,
        max_items: PAGE,
        search: search.map(str::to_owned),
        filter: Vec::new(),
    };
    let mut g = c.benchmark_group("enrollment list at 100k");
    g.sample_size(30);
    g.bench_function("first page + total", |b| {
        b.to_async(&rt).iter(|| async { store.query_enrollments(page(None, None)).await.map(|p| p.total) })
    });
    g.bench_function("page 1000 (keyset) + total", |b| {
        b.to_async(&rt).iter(|| async { store.query_enrollments(page(Some("press-050000".into()), None)).await.map(|p| p.total) })
    });
    g.bench_function("search 'robot-0999' + total", |b| {
        b.to_async(&rt).iter(|| async { store.query_enrollments(page(None, Some("robot-0999"))).await.map(|p| p.total) })
    });
    g.bench_function("search with no match + total", |b| {
        b.to_async(&rt).iter(|| async { store.query_enrollments(page(None, Some("nothing-like-this"))).await.map(|p| p.total) })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
