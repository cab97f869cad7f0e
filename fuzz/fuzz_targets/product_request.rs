//! Decoding arbitrary bytes as `product::Request`: see `agora_fuzz::message`.
#![no_main]

use agora_proto::messages::product;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_fuzz::message::<product::Request>(data));
