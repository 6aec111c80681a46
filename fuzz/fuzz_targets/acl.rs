#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rmq_fuzz::acl(data));
