//! Decoding arbitrary bytes as `Result<product::Response, ApiError>`
//! (see `agora_fuzz::message`).
#![no_main]

use agora_proto::ApiError;
use agora_proto::messages::product;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_fuzz::message::<Result<product::Response, ApiError>>(data));
