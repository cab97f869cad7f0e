//! Decoding arbitrary bytes as `front::SellerRequest`: see `agora_fuzz::message`.
#![no_main]

use agora_proto::messages::front;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_fuzz::message::<front::SellerRequest>(data));
