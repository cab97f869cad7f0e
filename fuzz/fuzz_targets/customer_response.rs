//! Decoding arbitrary bytes as `Result<customer::Response, ApiError>`
//! (see `agora_fuzz::message`).
#![no_main]

use agora_proto::ApiError;
use agora_proto::messages::customer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_fuzz::message::<Result<customer::Response, ApiError>>(data));
