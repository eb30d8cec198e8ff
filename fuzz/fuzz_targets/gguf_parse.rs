//! Bytes → `Gguf::parse`; for a file that parses, every tensor's data slice is touched and small
//! tensors are dequantized (the F2I types may refuse a shape, but must not panic).
#![no_main]

use fairy2i_format::gguf::Gguf;
use fairy2i_format::{blocks, convert};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(gguf) = Gguf::parse(data) else { return };
    for (_, value) in gguf.metadata.iter() {
        let _ = value.summary(4);
    }
    for t in &gguf.tensors {
        let bytes = gguf.tensor_data(t);
        assert_eq!(bytes.len() as u64, t.size, "{}", t.name);
        if blocks::can_dequantize(t.ty) && t.n_elements() <= 1 << 16 {
            let values =
                convert::tensor_to_f32(t.ty, &t.dims, bytes).expect("a parsed tensor dequantizes");
            assert_eq!(values.len() as u64, t.n_elements());
        } else if t.ty.is_f2i() && t.n_elements() <= 1 << 16 {
            if let Ok(values) = convert::tensor_to_f32(t.ty, &t.dims, bytes) {
                assert_eq!(values.len() as u64, t.n_elements());
            }
        }
    }
});
