#![no_main]
//! `dps_fuzz::mqtt_session` under libFuzzer; the function's module doc says what it feeds and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dps_fuzz::mqtt_session(data));
