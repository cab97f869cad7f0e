//! Decoding arbitrary bytes as `front::BuyerRequest`: see `agora_fuzz::message`.
#![no_main]

use agora_proto::messages::front;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_fuzz::message::<front::BuyerRequest>(data));
