//! Hot paths of attestation: SAS verification, group key derivation (once per group tried per device),
//! and sealing/opening secrets. `cargo bench -p dps-crypto`.

use criterion::{criterion_group, criterion_main, Criterion};
use dps_crypto::{build_token, derive_device_key, generate_key, MasterKey, SasToken};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let key = dps_crypto::decode_key(&generate_key()).expect("decodes the key");
    let token = build_token(&key, "0ne0001A2B3/registrations/dev1", 1_900_000_000, Some("registration"));
    c.bench_function("sas_parse_and_verify", |b| b.iter(|| SasToken::parse(black_box(&token)).map(|t| t.verify(&key)).unwrap_or(false)));
    let group = generate_key();
    c.bench_function("derive_device_key", |b| b.iter(|| derive_device_key(black_box(&group), black_box("sn-007-888-abc"))));
    let (mk, _) = MasterKey::generate();
    let sealed = mk.seal(group.as_bytes(), "group/g1");
    c.bench_function("seal_key", |b| b.iter(|| mk.seal(black_box(group.as_bytes()), "group/g1")));
    c.bench_function("open_key", |b| b.iter(|| mk.open(black_box(&sealed), "group/g1")));
}

criterion_group!(benches, bench);
criterion_main!(benches);
