//! Inputs found by the fuzz targets (`docs/fuzzing.md`), kept as tests.

use fairy2i_format::gguf::Gguf;
use fairy2i_format::{convert, Error, GgmlType};

/// A GGUF v3 file with no metadata and one tensor `t` of these dims and type, padded to its data.
fn one_tensor(dims: &[u64], ty: GgmlType) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes()); // tensors
    b.extend_from_slice(&0u64.to_le_bytes()); // key/values
    b.extend_from_slice(&1u64.to_le_bytes());
    b.push(b't');
    b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&ty.id().to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // offset
    b.resize(b.len().next_multiple_of(32), 0);
    b
}

/// fuzz gguf_parse crash-b064717b: a zero-sized tensor whose dims before the 0 overflow the element
/// count made `TensorInfo::n_elements` panic (overflow check). gguf.cpp rejects the shape; so do we.
#[test]
fn fuzz_gguf_parse_element_count_overflow() {
    let bytes = one_tensor(&[256 << 54, 3, 0], GgmlType::Q2_K);
    let e = Gguf::parse(&bytes).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadDim {
                dim: 1,
                value: 3,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("dimension 1 = 3 is out of range"),
        "{e}"
    );

    // Row count overflowing with ne[0] = 0 (`TensorInfo::n_rows`).
    let e = Gguf::parse(&one_tensor(&[0, 1 << 40, 1 << 40], GgmlType::F32)).unwrap_err();
    assert!(matches!(e, Error::BadDim { dim: 2, .. }), "{e}");

    // A zero after dims whose product fits is fine, and dequantizes to nothing.
    let bytes = one_tensor(&[256, 1 << 40, 0, 1 << 40], GgmlType::Q4_K);
    let g = Gguf::parse(&bytes).unwrap();
    let t = &g.tensors[0];
    assert_eq!((t.n_elements(), t.size), (0, 0));
    assert!(convert::tensor_to_f32(t.ty, &t.dims, g.tensor_data(t))
        .unwrap()
        .is_empty());
}
