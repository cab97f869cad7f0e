//! Parsing arbitrary text as an amount of money: see `agora_fuzz::money`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_fuzz::money(data));
