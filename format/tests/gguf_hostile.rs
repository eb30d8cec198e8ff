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

// Files built from their sections, for the errors the base file cannot reach by patching a few bytes.

/// A GGUF v3 file: the header with the given counts, the raw KV and tensor-info sections, zeros up to
/// the next multiple of 32 (the default alignment), then `data` zero bytes.
fn file(n_kv: u64, kvs: &[u8], n_tensors: u64, infos: &[u8], data: usize) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b.extend_from_slice(kvs);
    b.extend_from_slice(infos);
    b.resize(b.len().div_ceil(32) * 32, 0);
    b.resize(b.len() + data, 0);
    b
}

/// A GGUF string: u64 length, then the bytes.
fn gguf_str(s: &[u8]) -> Vec<u8> {
    let mut b = (s.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(s);
    b
}

/// One tensor info: name, n_dims, ne[..], type id, offset.
fn info(name: &[u8], dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
    let mut b = gguf_str(name);
    b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(&offset.to_le_bytes());
    b
}

/// One F32 tensor `t` with `dims` and no data (the size checks come before the data's).
fn one_tensor(dims: &[u64], ty: u32) -> Vec<u8> {
    file(0, &[], 1, &info(b"t", dims, ty, 0), 0)
}

#[test]
fn the_section_builder_makes_valid_files() {
    let kv = [
        gguf_str(b"k"),
        4u32.to_le_bytes().to_vec(),
        7u32.to_le_bytes().to_vec(),
    ]
    .concat();
    let infos = [info(b"a", &[8], 0, 0), info(b"b", &[32, 2], 8, 32)].concat();
    let b = file(1, &kv, 2, &infos, 32 + 2 * 34);
    let g = Gguf::parse(&b).unwrap();
    assert_eq!(g.metadata.get_u64("k"), Some(7));
    assert_eq!(g.tensors[1].name, "b");
    assert_eq!(g.tensors[1].size, 68);
}

#[test]
fn key_that_is_not_utf8() {
    let kv = [
        gguf_str(&[b'k', 0xff]),
        4u32.to_le_bytes().to_vec(),
        vec![0; 4],
    ]
    .concat();
    assert_eq!(err(&file(1, &kv, 0, &[], 0)), "key #0: not valid UTF-8");
}

#[test]
fn tensor_name_that_is_not_utf8() {
    // 0xc3 opens a two-byte sequence that '(' does not continue.
    let infos = [info(b"a", &[8], 0, 0), info(&[0xc3, b'('], &[8], 0, 32)].concat();
    assert_eq!(
        err(&file(0, &[], 2, &infos, 64)),
        "name of tensor #1: not valid UTF-8"
    );
}

#[test]
fn duplicate_tensor_name() {
    let infos = [info(b"t", &[8], 0, 0), info(b"t", &[8], 0, 32)].concat();
    assert_eq!(
        err(&file(0, &[], 2, &infos, 64)),
        "duplicate tensor name 't'"
    );
}

#[test]
fn dimension_out_of_range() {
    // One dimension above int64.
    assert_eq!(
        err(&one_tensor(&[8, 1 << 63], 0)),
        "tensor 't': dimension 1 = 9223372036854775808 is out of range"
    );
    // Each fits, their product (2^64 elements) does not.
    assert_eq!(
        err(&one_tensor(&[1 << 32, 1 << 32], 0)),
        "tensor 't': dimension 1 = 4294967296 is out of range"
    );
    // With ne[0] = 0 there are no elements, but the row count 2^32 · 2^32 must still fit.
    assert_eq!(
        err(&one_tensor(&[0, 1 << 32, 1 << 32], 0)),
        "tensor 't': dimension 2 = 4294967296 is out of range"
    );
}

#[test]
fn row_that_is_not_whole_blocks() {
    // q8_0 (id 8) has blocks of 32 elements.
    assert_eq!(
        err(&one_tensor(&[48, 2], 8)),
        "tensor 't': row of 48 elements is not a multiple of the q8_0 block size 32"
    );
}

#[test]
fn tensor_size_beyond_int64() {
    // 2^61 f32 elements: the element count fits int64, the 2^63 bytes do not.
    assert_eq!(
        err(&one_tensor(&[1 << 61], 0)),
        "tensor 't': size overflow computing tensor size"
    );
    // 2^62 f32 elements: 2^64 bytes overflow already in the row size.
    assert_eq!(
        err(&one_tensor(&[1 << 62], 0)),
        "tensor 't': size overflow computing row size"
    );
}

/// A KV `k` holding `depth` arrays nested in each other, the innermost one of `inner` type with no
/// element.
fn nested(depth: usize, inner: u32) -> Vec<u8> {
    let mut kv = gguf_str(b"k");
    kv.extend_from_slice(&9u32.to_le_bytes()); // array
    for level in 0..depth {
        let elem_type = if level + 1 == depth { inner } else { 9 };
        let len = if level + 1 == depth { 0u64 } else { 1 };
        kv.extend_from_slice(&elem_type.to_le_bytes());
        kv.extend_from_slice(&len.to_le_bytes());
    }
    file(1, &kv, 0, &[], 0)
}

#[test]
fn arrays_nested_too_deeply() {
    // MAX_ARRAY_DEPTH (8) arrays are read; a ninth array inside them is refused before it is read.
    let ok = nested(8, 0);
    let g = Gguf::parse(&ok).unwrap();
    assert_eq!(g.metadata.len(), 1);
    assert_eq!(err(&nested(9, 0)), "key 'k': arrays nested deeper than 8");
}

#[test]
fn unknown_array_element_type() {
    let kv = [
        gguf_str(b"k"),
        9u32.to_le_bytes().to_vec(),
        13u32.to_le_bytes().to_vec(),
        0u64.to_le_bytes().to_vec(),
    ]
    .concat();
    assert_eq!(
        err(&file(1, &kv, 0, &[], 0)),
        "key 'k': unknown value type 13"
    );
}
