//! Decoding arbitrary bytes as `customer::Request`: see `agora_fuzz::message`.
#![no_main]

use agora_proto::messages::customer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_fuzz::message::<customer::Request>(data));
