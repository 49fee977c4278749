//! libFuzzer target: [`ferromq::fuzzing::request`] (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferromq::fuzzing::request(data));
