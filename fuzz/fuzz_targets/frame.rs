//! The frame decoder on arbitrary bytes with an arbitrary limit: see `agora_fuzz::frame`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_fuzz::frame(data));
