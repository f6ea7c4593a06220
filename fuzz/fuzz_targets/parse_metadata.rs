//! Metadata parsing (every role, keys): no input may panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| seal_tuf::testing::fuzz_parse(data));
