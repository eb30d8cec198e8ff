//! ggml's block types against gguf-py's numpy codecs: the files in `tests/data/blocks/` were written
//! by `tools/gen_block_golden.py` from the gguf-py of the pinned llama.cpp tree. Comparisons are
//! bit-exact (f32 bit patterns, so -0.0 and +0.0 differ).

use std::path::PathBuf;

use fairy2i_format::{blocks, convert, GgmlType};

fn golden(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/blocks")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Asserts equal bit patterns, naming the first differing value and its block.
fn assert_same_f32(ty: GgmlType, what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{ty} {what}: length");
    let bad = got
        .iter()
        .zip(want)
        .position(|(a, b)| a.to_bits() != b.to_bits());
    if let Some(i) = bad {
        let n_bad = got
            .iter()
            .zip(want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        panic!(
            "{ty} {what}: value {i} (block {}) is {:e} ({:#010x}), gguf-py gives {:e} ({:#010x}); {n_bad} values differ",
            i as u64 / ty.block_size(),
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits()
        );
    }
}

const DEQUANT_TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::TQ2_0,
];

const QUANT_TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
];

#[test]
fn dequantize_matches_gguf_py() {
    for &ty in DEQUANT_TYPES {
        assert!(blocks::can_dequantize(ty), "{ty}");
        let name = ty.name().to_lowercase();
        let data = golden(&format!("deq_{name}.bin"));
        let want = f32s(&golden(&format!("deq_{name}.f32")));
        let mut got = vec![f32::NAN; want.len()];
        blocks::dequantize(ty, &data, &mut got).unwrap();
        assert_same_f32(ty, "dequantize", &got, &want);

        // The same through the tensor dispatcher, as a 2-D tensor.
        let ne0 = ty.block_size() * 4;
        let dims = [ne0, want.len() as u64 / ne0];
        let got = convert::tensor_to_f32(ty, &dims, &data).unwrap();
        assert_same_f32(ty, "tensor_to_f32", &got, &want);
    }
}

#[test]
fn quantize_matches_gguf_py() {
    let input = f32s(&golden("quant_input.f32"));
    for &ty in QUANT_TYPES {
        assert!(blocks::can_quantize(ty), "{ty}");
        let want = golden(&format!("quant_{}.bin", ty.name().to_lowercase()));
        let mut got = Vec::new();
        blocks::quantize(ty, &input, &mut got).unwrap();
        assert_eq!(got.len(), want.len(), "{ty}: length");
        let ts = ty.type_size() as usize;
        if let Some(b) = got
            .chunks(ts)
            .zip(want.chunks(ts))
            .position(|(a, b)| a != b)
        {
            let bs = ty.block_size() as usize;
            panic!(
                "{ty}: block {b} differs from gguf-py\n input {:?}\n ours  {:02x?}\n gguf  {:02x?}",
                &input[b * bs..(b + 1) * bs],
                &got[b * ts..(b + 1) * ts],
                &want[b * ts..(b + 1) * ts]
            );
        }
        let dims = [input.len() as u64 / 2, 2];
        assert_eq!(
            convert::f32_to_tensor(ty, &dims, &input).unwrap(),
            want,
            "{ty}: f32_to_tensor"
        );
    }
}

#[test]
fn real_tensor_first_rows_match_gguf_py() {
    let manifest = String::from_utf8(golden("real.txt")).unwrap();
    let mut seen = Vec::new();
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (ty, ne0, stem) = (
            f[2].parse::<GgmlType>().unwrap(),
            f[3].split(',').next().unwrap(),
            f[5],
        );
        let ne0: u64 = ne0.parse().unwrap();
        let data = golden(&format!("{stem}.bin"));
        let want = f32s(&golden(&format!("{stem}.f32")));
        assert_eq!(want.len() as u64, ne0, "{stem}");
        let got = convert::tensor_to_f32(ty, &[ne0], &data).unwrap();
        assert_same_f32(ty, &format!("{} {} first row", f[0], f[1]), &got, &want);
        seen.push(ty);
    }
    for ty in [
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::F32,
    ] {
        assert!(seen.contains(&ty), "real.txt has no {ty} tensor");
    }
}

#[test]
fn quantize_then_dequantize_is_close() {
    // Not a reference check (those are above): a sanity bound on the round-trip error.
    let input: Vec<f32> = f32s(&golden("quant_input.f32"))
        .into_iter()
        .skip(32 * 24)
        .collect();
    let input: Vec<f32> = input
        .into_iter()
        .filter(|v| v.abs() < 1e4)
        .take(2048)
        .collect();
    for (ty, tol) in [
        (GgmlType::Q8_0, 1.0 / 127.0),
        (GgmlType::Q4_0, 1.0 / 7.0),
        (GgmlType::F16, 1e-3),
    ] {
        let bytes = convert::f32_to_tensor(ty, &[input.len() as u64], &input).unwrap();
        let back = convert::tensor_to_f32(ty, &[input.len() as u64], &bytes).unwrap();
        for (x, y) in input.chunks(32).zip(back.chunks(32)) {
            let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
            for (a, b) in x.iter().zip(y) {
                assert!(
                    (a - b).abs() <= tol * amax + 1e-6,
                    "{ty}: {a} -> {b} (block max {amax})"
                );
            }
        }
    }
}
