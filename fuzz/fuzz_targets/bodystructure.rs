//! cargo-fuzz target: fetch summaries and bodystructure walking; the properties are in `properties/bodystructure.rs`,
//! shared with the short run in the test suite (`tests/fuzz_smoke.rs`).

#![no_main]

#[path = "../properties/contained.rs"]
mod contained;
#[path = "../properties/bodystructure.rs"]
mod property;

libfuzzer_sys::fuzz_target!(|data: &[u8]| property::run(data));
