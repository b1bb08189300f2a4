//! Fuzz targets as plain functions over bytes, one per input surface a peer or an operator controls.
//!
//! Why a library: the same functions run under libFuzzer (`fuzz/`, a cargo-fuzz project on nightly, outside
//! the workspace) and in `tests/replay.rs`, which feeds every file of `corpus/<target>/` to its function on
//! stable — so `cargo test --workspace` (and `make test`) replays every input fuzzing ever kept, including
//! each crash found, without nightly or sanitizers.
//!
//! Each target feeds the bytes into the real code path and asserts what must hold for any input: no panic,
//! an answer within a deadline, every error carrying a DPS code that matches its status, and round trips
//! where a format is both read and written. A failed assertion panics, which libFuzzer reports as a crash.
//!
//! Targets that need the service (HTTP, WebSocket, MQTT, AMQP, JSON validation) share one in-process
//! service ([`harness`]) and talk to it over in-memory streams.

mod amqp;
mod harness;
mod http;
mod json;
mod mqtt;
mod sas;
mod tpm;
mod x509;

pub use amqp::amqp_frames;
pub use harness::{harness, Harness};
pub use http::{http_request, websocket};
pub use json::json_documents;
pub use mqtt::mqtt_session;
pub use sas::sas_token;
pub use tpm::tpm_structures;
pub use x509::x509_chain;

/// A target: bytes in, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target by name: the name is its `fuzz/fuzz_targets/<name>.rs` and its `corpus/<name>/` directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("http_request", http_request),
    ("websocket", websocket),
    ("mqtt_session", mqtt_session),
    ("amqp_frames", amqp_frames),
    ("sas_token", sas_token),
    ("x509_chain", x509_chain),
    ("json_documents", json_documents),
    ("tpm_structures", tpm_structures),
];
