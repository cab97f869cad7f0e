//! Parsing arbitrary text as an item id: see `agora_fuzz::item_id`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_fuzz::item_id(data));
