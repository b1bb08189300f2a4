#![no_main]
//! `dps_fuzz::websocket` under libFuzzer; the function's module doc says what it feeds and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dps_fuzz::websocket(data));
