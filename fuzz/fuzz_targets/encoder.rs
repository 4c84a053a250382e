//! cargo-fuzz target: the imap command encoder; the properties are in `properties/encoder.rs`,
//! shared with the short run in the test suite (`tests/fuzz_smoke.rs`).

#![no_main]

#[path = "../properties/encoder.rs"]
mod property;

libfuzzer_sys::fuzz_target!(|data: &[u8]| property::run(data));
