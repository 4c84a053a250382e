//! cargo-fuzz target: state and cursor tokens; the properties are in `properties/tokens.rs`,
//! shared with the short run in the test suite (`tests/fuzz_smoke.rs`).

#![no_main]

#[path = "../properties/tokens.rs"]
mod property;

libfuzzer_sys::fuzz_target!(|data: &[u8]| property::run(data));
