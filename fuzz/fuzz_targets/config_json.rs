//! Bytes → `serde_json::Value`. A placeholder: the converter's config.json parser takes its place.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<serde_json::Value>(data);
});
