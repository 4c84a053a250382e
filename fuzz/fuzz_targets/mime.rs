//! cargo-fuzz target: mime and header decoding; the properties are in `properties/mime.rs`,
//! shared with the short run in the test suite (`tests/fuzz_smoke.rs`).

#![no_main]

#[path = "../properties/mime.rs"]
mod property;

libfuzzer_sys::fuzz_target!(|data: &[u8]| property::run(data));
