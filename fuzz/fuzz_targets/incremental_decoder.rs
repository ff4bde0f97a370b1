#![no_main]
//! Fuzz target `incremental_decoder`: the checks live in `gpt_hybrid::fuzz_checks` (shared with the replay test).

libfuzzer_sys::fuzz_target!(|data: &[u8]| gpt_hybrid::fuzz_checks::check_incremental(data));
