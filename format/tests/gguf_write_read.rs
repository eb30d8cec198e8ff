//! Issue 15 §3: the GGUF writer refuses what the reader rejects, and what it writes reads back
//! identically. The property tests build random headers (every value type, nested arrays, every
//! tensor type, v2 and v3, `general.alignment`), some of them broken on purpose in a way the test
//! knows; the writer must refuse exactly the broken ones (leaving no file behind) and the reader must
//! return every accepted one as it was given. The unit tests check each refusal by name.

use std::path::Path;

use fairy2i_format::gguf::{
    Array, GgufWriter, MappedGguf, Metadata, TensorSpec, Value, ValueType, MAX_ARRAY_DEPTH,
};
use fairy2i_format::{Error, GgmlType};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Equality of values with floats compared bit for bit (NaN payloads and -0.0 included).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => {
            x.elem_type == y.elem_type
                && x.items.len() == y.items.len()
                && x.items.iter().zip(&y.items).all(|(p, q)| same_value(p, q))
        }
        _ => a == b,
    }
}

fn same_metadata(a: &Metadata, b: &Metadata) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b.iter())
            .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
}

/// The entries of a folder (the writer's temporary files included).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Writes a file with zero-filled tensor data, or returns the writer's error. On error the
/// folder must be as empty as before.
fn write(
    dir: &Path,
    version: u32,
    md: &Metadata,
    tensors: &[TensorSpec],
    data: &[Vec<u8>],
) -> Result<std::path::PathBuf, Error> {
    let path = dir.join("out.gguf");
    let before = entries(dir);
    let result = (|| {
        let mut w = GgufWriter::create_versioned(&path, version, md, tensors.to_vec())?;
        for d in data {
            w.write_tensor(d)?;
        }
        w.finish()
    })();
    if result.is_err() {
        assert_eq!(entries(dir), before, "a refused write left files behind");
    }
    result
}

/// The error under `WithPath`.
fn inner(e: Error) -> Error {
    match e {
        Error::WithPath { source, .. } => *source,
        e => e,
    }
}

fn refuse(md: &Metadata, tensors: &[TensorSpec]) -> Error {
    let dir = tempfile::tempdir().expect("temp dir");
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| vec![0u8; t.size().unwrap_or(0) as usize])
        .collect();
    match write(dir.path(), 3, md, tensors, &data) {
        Ok(_) => panic!("the writer accepted a header the reader rejects"),
        Err(e) => {
            assert!(entries(dir.path()).is_empty(), "no output after a refusal");
            inner(e)
        }
    }
}

fn spec(name: &str, dims: &[u64], ty: GgmlType) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        dims: dims.to_vec(),
        ty,
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies

const SCALAR_TYPES: [ValueType; 12] = [
    ValueType::U8,
    ValueType::I8,
    ValueType::U16,
    ValueType::I16,
    ValueType::U32,
    ValueType::I32,
    ValueType::F32,
    ValueType::Bool,
    ValueType::String,
    ValueType::U64,
    ValueType::I64,
    ValueType::F64,
];

fn scalar_of(t: ValueType) -> BoxedStrategy<Value> {
    match t {
        ValueType::U8 => any::<u8>().prop_map(Value::U8).boxed(),
        ValueType::I8 => any::<i8>().prop_map(Value::I8).boxed(),
        ValueType::U16 => any::<u16>().prop_map(Value::U16).boxed(),
        ValueType::I16 => any::<i16>().prop_map(Value::I16).boxed(),
        ValueType::U32 => any::<u32>().prop_map(Value::U32).boxed(),
        ValueType::I32 => any::<i32>().prop_map(Value::I32).boxed(),
        // Any bit pattern: NaNs, infinities, -0.0 and subnormals must survive too.
        ValueType::F32 => any::<u32>()
            .prop_map(|b| Value::F32(f32::from_bits(b)))
            .boxed(),
        ValueType::F64 => any::<u64>()
            .prop_map(|b| Value::F64(f64::from_bits(b)))
            .boxed(),
        ValueType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        ValueType::U64 => any::<u64>().prop_map(Value::U64).boxed(),
        ValueType::I64 => any::<i64>().prop_map(Value::I64).boxed(),
        // Strings are bytes: not necessarily UTF-8.
        ValueType::String => prop::collection::vec(any::<u8>(), 0..12)
            .prop_map(Value::String)
            .boxed(),
        ValueType::Array => unreachable!("arrays are built by `array`"),
    }
}

fn scalar() -> BoxedStrategy<Value> {
    prop::sample::select(SCALAR_TYPES.to_vec())
        .prop_flat_map(scalar_of)
        .boxed()
}

/// An array of one scalar type, or (while `depth` allows) an array of arrays, `depth` levels at
/// most. Inner arrays of one array may have different element types (the reader allows it).
fn array(depth: usize) -> BoxedStrategy<Value> {
    let flat = prop::sample::select(SCALAR_TYPES.to_vec())
        .prop_flat_map(|t| {
            prop::collection::vec(scalar_of(t), 0..5).prop_map(move |items| {
                Value::Array(Array {
                    elem_type: t,
                    items,
                })
            })
        })
        .boxed();
    if depth <= 1 {
        return flat;
    }
    prop_oneof![
        3 => flat,
        1 => prop::collection::vec(array(depth - 1), 0..3).prop_map(|items| Value::Array(Array {
            elem_type: ValueType::Array,
            items
        })),
    ]
    .boxed()
}

fn value() -> BoxedStrategy<Value> {
    prop_oneof![3 => scalar(), 1 => array(4)].boxed()
}

/// Any key (not necessarily ASCII; possibly empty).
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}(\\.[a-z_]{1,8}){0,2}",
        "\\PC{0,10}",
        Just("general.alignment".to_string()),
    ]
}

/// A tensor of a random type with a small shape whose rows are whole blocks.
fn tensor() -> impl Strategy<Value = (String, Vec<u64>, GgmlType)> {
    let ty = prop::sample::select(GgmlType::ALL.to_vec());
    (
        prop_oneof!["[a-z0-9_.]{0,12}", "\\PC{0,8}"],
        ty,
        0u64..=2,
        prop::collection::vec(0u64..=3, 0..=3),
    )
        .prop_map(|(name, ty, blocks, rest)| {
            let mut dims = vec![blocks * ty.block_size()];
            dims.extend(rest);
            (name, dims, ty)
        })
}

/// A header, valid or broken on purpose (`broken` says how; `None` for a valid one).
#[derive(Debug, Clone)]
struct Case {
    version: u32,
    md: Metadata,
    tensors: Vec<TensorSpec>,
    broken: Option<&'static str>,
}

fn valid_case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(2u32), Just(3u32)],
        prop::collection::vec((key(), value()), 0..8),
        prop::option::of(0u32..=8),
        prop::collection::vec(tensor(), 0..5),
    )
        .prop_map(|(version, kvs, align_exp, tensors)| {
            let mut md = Metadata::new();
            for (k, v) in kvs {
                md.set(k, v);
            }
            // A `general.alignment` drawn as a key above is replaced by a valid one, or removed.
            md.remove("general.alignment");
            if let Some(e) = align_exp {
                md.set("general.alignment", Value::U32(1 << e));
            }
            let mut seen = std::collections::HashSet::new();
            let tensors = tensors
                .into_iter()
                .filter(|(n, _, _)| seen.insert(n.clone()))
                .map(|(name, dims, ty)| TensorSpec { name, dims, ty })
                .collect();
            Case {
                version,
                md,
                tensors,
                broken: None,
            }
        })
}

/// A valid case with one defect of the kind the reader rejects.
fn broken_case() -> impl Strategy<Value = Case> {
    (valid_case(), 0usize..7, any::<prop::sample::Index>()).prop_map(|(mut c, how, idx)| {
        match how {
            0 if !c.tensors.is_empty() => {
                let t = c.tensors[idx.index(c.tensors.len())].clone();
                c.tensors.push(t);
                c.broken = Some("duplicate tensor name");
            }
            1 => {
                c.md.set(
                    "mixed",
                    Value::Array(Array {
                        elem_type: ValueType::U32,
                        items: vec![Value::U32(1), Value::I32(2)],
                    }),
                );
                c.broken = Some("mixed array");
            }
            2 => {
                let mut v = Value::Array(Array {
                    elem_type: ValueType::U8,
                    items: vec![],
                });
                for _ in 0..MAX_ARRAY_DEPTH {
                    v = Value::Array(Array {
                        elem_type: ValueType::Array,
                        items: vec![v],
                    });
                }
                c.md.set("deep", v);
                c.broken = Some("nesting");
            }
            3 => {
                c.md.set("general.alignment", Value::U32(48));
                c.broken = Some("alignment");
            }
            4 => {
                c.tensors
                    .push(spec("five dims", &[1, 1, 1, 1, 1], GgmlType::F32));
                c.broken = Some("dims");
            }
            5 => {
                c.tensors
                    .push(spec("not whole blocks", &[33], GgmlType::Q8_0));
                c.broken = Some("block");
            }
            6 => {
                c.version = 1;
                c.broken = Some("version");
            }
            _ => {}
        }
        c
    })
}

fn case() -> impl Strategy<Value = Case> {
    prop_oneof![3 => valid_case(), 1 => broken_case()]
}

fn random_data(tensors: &[TensorSpec], seed: u64) -> Vec<Vec<u8>> {
    let mut s = seed | 1;
    tensors
        .iter()
        .map(|t| {
            let n = t.size().unwrap_or(0) as usize;
            (0..n)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s >> 32) as u8
                })
                .collect()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The writer refuses exactly the broken headers; whatever it accepts reads back as given.
    #[test]
    fn written_files_read_back_identically(c in case(), seed in any::<u64>()) {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = random_data(&c.tensors, seed);
        match (write(dir.path(), c.version, &c.md, &c.tensors, &data), c.broken) {
            (Err(e), None) => prop_assert!(false, "refused a valid header: {e}"),
            (Ok(_), Some(how)) => prop_assert!(false, "accepted a broken header ({how})"),
            (Err(_), Some(_)) => prop_assert!(entries(dir.path()).is_empty()),
            (Ok(path), None) => {
                let map = MappedGguf::open(&path).expect("open");
                let g = map.parse().map_err(|e| TestCaseError::fail(format!("reader: {e}")))?;
                prop_assert_eq!(g.version, c.version);
                prop_assert!(same_metadata(&g.metadata, &c.md), "metadata differs");
                let expected_alignment = c.md.get_u64("general.alignment").unwrap_or(32);
                prop_assert_eq!(g.alignment, expected_alignment);
                prop_assert_eq!(g.tensors.len(), c.tensors.len());
                for ((info, t), d) in g.tensors.iter().zip(&c.tensors).zip(&data) {
                    prop_assert_eq!(&info.name, &t.name);
                    prop_assert_eq!(&info.dims, &t.dims);
                    prop_assert_eq!(info.ty, t.ty);
                    prop_assert_eq!(info.offset % expected_alignment, 0);
                    prop_assert_eq!(g.tensor_data(info), d.as_slice());
                }
                // The file is exactly the data section's end (every tensor padded).
                let end = g.tensors.last().map_or(g.data_offset, |t| {
                    g.data_offset + (t.offset + t.size).div_ceil(expected_alignment) * expected_alignment
                });
                prop_assert_eq!(g.bytes().len() as u64, end);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Each refusal, by name

#[test]
fn duplicate_tensor_names_are_refused() {
    let t = [
        spec("blk.0.attn_q.weight", &[32], GgmlType::F32),
        spec("x", &[32], GgmlType::F32),
        spec("blk.0.attn_q.weight", &[64], GgmlType::F16),
    ];
    match refuse(&Metadata::new(), &t) {
        Error::DuplicateTensor(n) => assert_eq!(n, "blk.0.attn_q.weight"),
        e => panic!("wrong error: {e}"),
    }
}

#[test]
fn mixed_arrays_are_refused_with_the_item_path() {
    let mut md = Metadata::new();
    md.set("ok", Value::str_array(["a", "b"]));
    md.set(
        "tokenizer.ggml.scores",
        Value::Array(Array {
            elem_type: ValueType::F32,
            items: vec![Value::F32(0.0), Value::F32(1.0), Value::F64(2.0)],
        }),
    );
    match refuse(&md, &[]) {
        Error::MixedArray {
            key,
            at,
            expected,
            got,
        } => {
            assert_eq!(key, "tokenizer.ggml.scores");
            assert_eq!(at, "[2]");
            assert_eq!((expected, got), ("f32", "f64"));
        }
        e => panic!("wrong error: {e}"),
    }
    // Inside a nested array the path names every level.
    let mut md = Metadata::new();
    md.set(
        "nested",
        Value::Array(Array {
            elem_type: ValueType::Array,
            items: vec![
                Value::array(ValueType::U8, vec![Value::U8(1)]),
                Value::array(ValueType::U8, vec![Value::U8(1), Value::str("x")]),
            ],
        }),
    );
    let e = refuse(&md, &[]);
    assert!(
        matches!(&e, Error::MixedArray { key, at, .. } if key == "nested" && at == "[1][1]"),
        "{e}"
    );
    // A scalar where an array of arrays needs an array.
    let mut md = Metadata::new();
    md.set(
        "outer",
        Value::Array(Array {
            elem_type: ValueType::Array,
            items: vec![Value::U8(1)],
        }),
    );
    let e = refuse(&md, &[]);
    assert!(
        matches!(&e, Error::MixedArray { key, expected: "arr", got: "u8", .. } if key == "outer"),
        "{e}"
    );
    assert!(e.to_string().contains("outer"), "{e}");
}

/// `depth` arrays nested in each other around an empty u8 array.
fn nested(depth: usize) -> Value {
    let mut v = Value::array(ValueType::U8, vec![]);
    for _ in 1..depth {
        v = Value::Array(Array {
            elem_type: ValueType::Array,
            items: vec![v],
        });
    }
    v
}

#[test]
fn arrays_nested_deeper_than_the_reader_allows_are_refused() {
    // The deepest nesting the reader takes is written and read back.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut md = Metadata::new();
    md.set("deep", nested(MAX_ARRAY_DEPTH));
    let path = write(dir.path(), 3, &md, &[], &[]).expect("the deepest allowed nesting");
    let map = MappedGguf::open(&path).expect("open");
    let g = map.parse().expect("the reader takes it");
    assert!(same_value(g.metadata.get("deep").expect("key"), &nested(8)));
    // One more level is refused.
    let mut md = Metadata::new();
    md.set("too.deep", nested(MAX_ARRAY_DEPTH + 1));
    match refuse(&md, &[]) {
        Error::NestingTooDeep { key, max } => {
            assert_eq!(key, "too.deep");
            assert_eq!(max, MAX_ARRAY_DEPTH);
        }
        e => panic!("wrong error: {e}"),
    }
}

#[test]
fn bad_alignment_is_refused() {
    for bad in [
        Value::U32(0),
        Value::U32(48),
        Value::U64(32),
        Value::str("32"),
    ] {
        let mut md = Metadata::new();
        md.set("general.alignment", bad.clone());
        let e = refuse(&md, &[spec("t", &[8], GgmlType::F32)]);
        assert!(matches!(e, Error::BadAlignment(_)), "{bad:?}: {e}");
    }
}

#[test]
fn bad_versions_are_refused() {
    for v in [0u32, 1, 4] {
        let dir = tempfile::tempdir().expect("temp dir");
        let e = write(dir.path(), v, &Metadata::new(), &[], &[]).expect_err("bad version");
        assert!(matches!(inner(e), Error::UnsupportedVersion(x) if x == v));
        assert!(entries(dir.path()).is_empty());
    }
}

#[test]
fn tensor_shapes_the_reader_rejects_are_refused() {
    let md = Metadata::new();
    // No dimension, or more than ggml's four.
    for dims in [vec![], vec![1, 1, 1, 1, 1]] {
        match refuse(&md, &[spec("bad.dims", &dims, GgmlType::F32)]) {
            Error::BadDims { tensor, n_dims } => {
                assert_eq!(tensor, "bad.dims");
                assert_eq!(n_dims as usize, dims.len());
            }
            e => panic!("wrong error: {e}"),
        }
    }
    // A dimension past int64.
    let big = i64::MAX as u64 + 1;
    match refuse(&md, &[spec("huge", &[1, big], GgmlType::F32)]) {
        Error::BadDim { tensor, dim, value } => {
            assert_eq!((tensor.as_str(), dim, value), ("huge", 1, big));
        }
        e => panic!("wrong error: {e}"),
    }
    // An element count past int64 (each dimension fits).
    let e = refuse(&md, &[spec("many", &[1 << 32, 1 << 31], GgmlType::F32)]);
    assert!(
        matches!(&e, Error::BadDim { tensor, dim: 1, .. } if tensor == "many"),
        "{e}"
    );
    // So is the row count alone, even with an empty row (the reader's stricter rule).
    let e = refuse(&md, &[spec("rows", &[0, 1 << 32, 1 << 32], GgmlType::F32)]);
    assert!(
        matches!(&e, Error::BadDim { tensor, dim: 2, .. } if tensor == "rows"),
        "{e}"
    );
    // A byte size past int64 (the element count fits).
    let e = refuse(&md, &[spec("bytes", &[1 << 31, 1 << 31], GgmlType::F32)]);
    assert!(e.to_string().contains("'bytes'"), "{e}");
    assert!(
        matches!(&e, Error::InTensor { tensor, source } if tensor == "bytes" && matches!(**source, Error::Overflow(_))),
        "{e}"
    );
    // Rows that are not whole blocks.
    let e = refuse(
        &md,
        &[spec("blk.0.ffn_up.weight", &[100, 2], GgmlType::Q8_0)],
    );
    assert!(
        matches!(&e, Error::InTensor { tensor, source } if tensor == "blk.0.ffn_up.weight" && matches!(**source, Error::RowNotBlockAligned { .. })),
        "{e}"
    );
}

#[test]
fn a_refusal_leaves_an_existing_file_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("out.gguf");
    std::fs::write(&path, b"previous contents").expect("write");
    let t = vec![
        spec("a", &[8], GgmlType::F32),
        spec("a", &[8], GgmlType::F32),
    ];
    let e = GgufWriter::create(&path, &Metadata::new(), t)
        .err()
        .expect("refused");
    assert!(matches!(inner(e), Error::DuplicateTensor(ref n) if n == "a"));
    assert_eq!(std::fs::read(&path).expect("read"), b"previous contents");
    assert_eq!(entries(dir.path()), ["out.gguf"]);
}
