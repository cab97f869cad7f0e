//! Decoding arbitrary bytes as `ApiError`, a goodbye's payload: see `agora_fuzz::message`.
#![no_main]

use agora_proto::ApiError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_fuzz::message::<ApiError>(data));
