//! Decoding arbitrary bytes as `payments::Request`: see `agora_fuzz::message`.
#![no_main]

use agora_proto::messages::payments;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_fuzz::message::<payments::Request>(data));
