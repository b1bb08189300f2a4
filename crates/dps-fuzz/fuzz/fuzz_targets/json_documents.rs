#![no_main]
//! `dps_fuzz::json_documents` under libFuzzer; the function's module doc says what it feeds and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dps_fuzz::json_documents(data));
