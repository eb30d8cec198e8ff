//! Issue 3 §1: truncated or lying GGUF files get one clear error each, never a panic.
//! The base file is laid out by hand here (not by our writer), so the offsets below are independent
//! of the code under test.

use fairy2i_format::gguf::Gguf;

/// A valid GGUF v3: one KV (`general.architecture` = "x"), one F32 tensor `t` of 8 elements.
fn base() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF"); // 0..4
    b.extend_from_slice(&3u32.to_le_bytes()); // 4..8 version
    b.extend_from_slice(&1u64.to_le_bytes()); // 8..16 tensor count
    b.extend_from_slice(&1u64.to_le_bytes()); // 16..24 kv count
    b.extend_from_slice(&20u64.to_le_bytes()); // 24..32 key length
    b.extend_from_slice(b"general.architecture"); // 32..52
    b.extend_from_slice(&8u32.to_le_bytes()); // 52..56 value type (string)
    b.extend_from_slice(&1u64.to_le_bytes()); // 56..64 string length
    b.push(b'x'); // 64
    b.extend_from_slice(&1u64.to_le_bytes()); // 65..73 name length
    b.push(b't'); // 73
    b.extend_from_slice(&1u32.to_le_bytes()); // 74..78 n_dims
    b.extend_from_slice(&8u64.to_le_bytes()); // 78..86 ne[0]
    b.extend_from_slice(&0u32.to_le_bytes()); // 86..90 type F32
    b.extend_from_slice(&0u64.to_le_bytes()); // 90..98 offset
    b.resize(128, 0); // data section at the next multiple of 32
    for i in 0..8u32 {
        b.extend_from_slice(&(i as f32).to_le_bytes());
    }
    b
}

fn put(b: &mut [u8], at: usize, bytes: &[u8]) {
    b[at..at + bytes.len()].copy_from_slice(bytes);
}

fn err(b: &[u8]) -> String {
    match Gguf::parse(b) {
        Ok(_) => panic!("accepted a bad file"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_base_file_is_valid() {
    let b = base();
    let g = Gguf::parse(&b).unwrap();
    assert_eq!(g.metadata.get_str("general.architecture"), Some("x"));
    assert_eq!(g.tensors[0].dims, vec![8]);
    assert_eq!(g.data_offset, 128);
    assert_eq!(g.tensor_data(&g.tensors[0]).len(), 32);
}

#[test]
fn bad_magic() {
    let mut b = base();
    put(&mut b, 0, b"GGML");
    assert!(err(&b).contains("not a GGUF file"), "{}", err(&b));
}

#[test]
fn unsupported_version() {
    let mut b = base();
    put(&mut b, 4, &1u32.to_le_bytes());
    assert!(err(&b).contains("unsupported GGUF version 1"));
}

#[test]
fn every_truncation_is_an_error() {
    let b = base();
    for len in 0..b.len() {
        let e = err(&b[..len]);
        assert!(
            e.contains("truncated") || e.contains("past the end") || e.contains("count"),
            "len {len}: {e}"
        );
    }
}

#[test]
fn tensor_count_too_large() {
    let mut b = base();
    put(&mut b, 8, &u64::MAX.to_le_bytes());
    assert!(err(&b).contains("tensor count"), "{}", err(&b));
}

#[test]
fn string_length_past_the_end() {
    let mut b = base();
    put(&mut b, 56, &(1u64 << 40).to_le_bytes());
    assert!(err(&b).contains("general.architecture"), "{}", err(&b));
}

#[test]
fn unknown_kv_type() {
    let mut b = base();
    put(&mut b, 52, &13u32.to_le_bytes());
    assert!(err(&b).contains("unknown value type 13"), "{}", err(&b));
}

#[test]
fn unknown_tensor_type() {
    let mut b = base();
    put(&mut b, 86, &50u32.to_le_bytes());
    assert!(err(&b).contains("unknown ggml type id 50"), "{}", err(&b));
}

#[test]
fn misaligned_tensor_offset() {
    let mut b = base();
    put(&mut b, 90, &4u64.to_le_bytes());
    assert!(err(&b).contains("data offset 4, expected 0"), "{}", err(&b));
}

#[test]
fn tensor_data_past_the_end() {
    let mut b = base();
    put(&mut b, 78, &1024u64.to_le_bytes());
    assert!(err(&b).contains("past the end of the file"), "{}", err(&b));
}

#[test]
fn too_many_dims() {
    let mut b = base();
    put(&mut b, 74, &5u32.to_le_bytes());
    assert!(err(&b).contains("5 dimensions"), "{}", err(&b));
}

#[test]
fn alignment_must_be_a_power_of_two_u32() {
    // Replace the KV with general.alignment = 48 (u32): same key length (17 vs 20 → rebuild).
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&17u64.to_le_bytes());
    b.extend_from_slice(b"general.alignment");
    b.extend_from_slice(&4u32.to_le_bytes());
    b.extend_from_slice(&48u32.to_le_bytes());
    assert!(err(&b).contains("general.alignment"), "{}", err(&b));
}

#[test]
fn duplicate_key() {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&2u64.to_le_bytes());
    for _ in 0..2 {
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(b'k');
        b.extend_from_slice(&0u32.to_le_bytes());
        b.push(7);
    }
    assert!(err(&b).contains("duplicate key 'k'"), "{}", err(&b));
}
