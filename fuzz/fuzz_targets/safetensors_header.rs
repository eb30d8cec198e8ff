//! Bytes → `safetensors::SafeTensors::deserialize`, then our own check that each view's bytes are
//! exactly shape × dtype size (what the converter relies on).
#![no_main]

use libfuzzer_sys::fuzz_target;
use safetensors::SafeTensors;

fuzz_target!(|data: &[u8]| {
    let Ok(st) = SafeTensors::deserialize(data) else {
        return;
    };
    for (name, view) in st.tensors() {
        let n = view
            .shape()
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d));
        let bytes = n.and_then(|n| n.checked_mul(view.dtype().size()));
        assert_eq!(bytes, Some(view.data().len()), "{name}");
    }
});
