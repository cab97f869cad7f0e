//! Checking arbitrary card details: see `agora_fuzz::card`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_fuzz::card(data));
