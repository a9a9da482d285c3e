#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidings_tests::fuzz::redis_frame(data));
