//! The console's logic, kept apart from the views so that it is unit-tested on the host.
//!
//! No I/O and no async: the crate compiles for wasm (the `ui/` Leptos app depends on it) and for the host
//! (`cargo test -p dps-console-model`). Wire types come from `dps-proto`; nothing here redefines them.
//!
//! - [`validation`]: the service's identifier, key and certificate rules, checked before a request is sent.
//! - [`enrollment_form`]: the enrollment and group form ⇄ `IndividualEnrollment` / `EnrollmentGroup`.
//! - [`hub_form`]: the linked-hub form ⇄ `LinkedHub`, with the connectors.
//! - [`transfer`]: JSON and CSV export and import of enrollments and groups.
//! - [`document`]: an enrollment or a group, as the list and detail views see it.
//! - [`paging`]: continuation-token paging with a way back.
//! - [`derived_key`]: a group device's key, HMAC-SHA256(group key, registration id).
//! - [`error_help`], [`format`], [`charts`], [`logs`]: error codes in plain language, times and counts, chart
//!   buckets and shares, the live log's buffer and filters.
//! - [`trace`]: a registration's decision trace as steps.
//! - [`simulation`]: the Simulate page's choices, states and the Markdown transcript of a device's flow.

pub mod charts;
pub mod derived_key;
pub mod document;
pub mod enrollment_form;
pub mod error_help;
pub mod format;
pub mod hub_form;
pub mod logs;
pub mod paging;
pub mod simulation;
pub mod tpm;
pub mod trace;
pub mod transfer;
pub mod validation;
