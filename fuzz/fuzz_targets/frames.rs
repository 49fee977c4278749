//! libFuzzer target: [`ferromq::fuzzing::frames`] (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferromq::fuzzing::frames(data));
