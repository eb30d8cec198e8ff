//! The k-quant encoders against llama-quantize's bytes for two rows of edge cases
//! (`tests/data/kquants/`, written by the end-to-end test `tests/tests/kquants.rs`; its README says
//! how). The end-to-end test checks whole tensors against a live llama-quantize; this one runs without
//! llama.cpp.

use std::path::PathBuf;

use fairy2i_format::{blocks, convert, GgmlType};

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/kquants")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

const TYPES: [(&str, GgmlType); 5] = [
    ("q2_k", GgmlType::Q2_K),
    ("q3_k", GgmlType::Q3_K),
    ("q4_k", GgmlType::Q4_K),
    ("q5_k", GgmlType::Q5_K),
    ("q6_k", GgmlType::Q6_K),
];

/// Panics naming the first differing block.
fn assert_same(ty: GgmlType, what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{ty} {what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        let bs = ty.type_size() as usize;
        panic!(
            "{ty} {what}: byte {i} (block {}, byte {} in it) is {:#04x}, llama-quantize wrote {:#04x}",
            i / bs,
            i % bs,
            got[i],
            want[i]
        );
    }
}

#[test]
fn reference_quantizers_match_llama_quantize() {
    let x = f32s(&data("input.f32"));
    assert_eq!(x.len(), 2 * 1536);
    for (name, ty) in TYPES {
        let want = data(&format!("{name}.bin"));
        let mut got = vec![0u8; want.len()];
        blocks::quantize_into(ty, &x, &mut got).unwrap();
        assert_same(ty, "without imatrix", &got, &want);
        // The same through the tensor-level entry point.
        assert_eq!(convert::f32_to_tensor(ty, &[1536, 2], &x).unwrap(), want);
    }
}

#[test]
fn imatrix_quantizers_match_llama_quantize() {
    let x = f32s(&data("input.f32"));
    let qw = f32s(&data("imatrix.f32"));
    assert_eq!(qw.len(), 1536);
    for (name, ty) in TYPES {
        let want = data(&format!("{name}.imatrix.bin"));
        let mut got = vec![0u8; want.len()];
        blocks::quantize_weighted_into(ty, &x, &qw, &mut got).unwrap();
        assert_same(ty, "with imatrix", &got, &want);
        // The importance matters: the unweighted bytes differ.
        assert_ne!(want, data(&format!("{name}.bin")), "{ty}");
    }
}

#[test]
fn encodings_decode_close_to_the_input() {
    // Not a comparison with llama.cpp: a sanity bound on pseudo-random, roughly normal values
    // (SmolLM2's weights come from a Q4_1 file, already on a 4-bit grid), relative RMS error falling
    // with the bits.
    let mut s = 0x9e37_79b9u32;
    let mut uniform = || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        s as f32 / u32::MAX as f32
    };
    let x: Vec<f32> = (0..4096)
        .map(|_| (0..4).map(|_| uniform()).sum::<f32>() - 2.0)
        .collect();
    let mut last = f64::INFINITY;
    for (_, ty) in TYPES {
        let mut q = Vec::new();
        blocks::quantize(ty, &x, &mut q).unwrap();
        let mut y = vec![0f32; x.len()];
        blocks::dequantize(ty, &q, &mut y).unwrap();
        let (mut num, mut den) = (0f64, 0f64);
        for (a, b) in y.iter().zip(&x) {
            num += f64::from(a - b).powi(2);
            den += f64::from(*b).powi(2);
        }
        let e = (num / den).sqrt();
        eprintln!("{ty}: relative RMS error {e:.4}");
        assert!(
            e < 0.8 * last && e < 0.35,
            "{ty}: relative error {e} (previous {last})"
        );
        last = e;
    }
    assert!(last < 0.03, "q6_K relative error {last}");
}
