#![no_main]
//! `dps_fuzz::amqp_frames` under libFuzzer; the function's module doc says what it feeds and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dps_fuzz::amqp_frames(data));
