//! The node's multipart/form-data upload parser: no input may panic, and
//! nothing beyond the limits may be accepted. The first line of an input is
//! the `Content-Type` value, the rest the body.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| seal_node::testing::fuzz_multipart(data));
