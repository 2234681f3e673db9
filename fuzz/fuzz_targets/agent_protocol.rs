#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| regente_fuzz::agent_protocol(data));
