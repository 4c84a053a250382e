//! cargo-fuzz target: the upstream guard and the response parser behind it; the properties
//! are in `properties/upstream.rs`, shared with the short run in the test suite
//! (`tests/fuzz_smoke.rs`).

#![no_main]

#[path = "../properties/contained.rs"]
mod contained;
#[path = "../properties/upstream.rs"]
mod property;

libfuzzer_sys::fuzz_target!(|data: &[u8]| property::run(data));
