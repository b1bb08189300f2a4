#![no_main]
//! `dps_fuzz::sas_token` under libFuzzer; the function's module doc says what it feeds and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dps_fuzz::sas_token(data));
