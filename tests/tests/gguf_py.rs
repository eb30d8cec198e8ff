//! Issue 3 §1: files our writer produces are read by llama.cpp's own gguf-py (the `gguf` package of the
//! pinned, patched tree) with identical key/values and tensors — every KV value type, nested arrays,
//! standard tensor types and an F2I tensor.
//!
//! Needs the gguf-py environment (`ffi/build-llama.sh --python-venv`, exported as `FAIRY2I_PYTHON` by
//! scripts/test) and the patched source (`ffi/build-llama.sh --source-only`).

use std::path::PathBuf;
use std::process::Command;

use fairy2i_format::gguf::{GgufWriter, Metadata, TensorSpec, Value, ValueType};
use fairy2i_format::GgmlType;
use fairy2i_tests::*;

const READER: &str = r#"
import json, sys, hashlib
from gguf import GGUFReader
from gguf.constants import GGUFValueType as T
r = GGUFReader(sys.argv[1])
def val(f, idx):
    t = f.types
    def scalar(part, ty):
        if ty == T.STRING:
            return bytes(part).decode("utf-8")
        v = part[0].item() if hasattr(part[0], "item") else part[0]
        return v
    if t[0] == T.ARRAY:
        # flat arrays only here; nested ones are reported by type list and element count
        if len(t) > 2:
            return {"nested": [int(x) for x in t]}
        return [scalar(f.parts[i], t[1]) for i in f.data]
    return scalar(f.parts[f.data[0]], t[0])
out = {"kv": [], "tensors": []}
for k, f in r.fields.items():
    if k.startswith("GGUF."):
        continue
    out["kv"].append([k, [int(x) for x in f.types], val(f, 0)])
for t in r.tensors:
    out["tensors"].append([t.name, int(t.tensor_type), [int(x) for x in t.shape], hashlib.sha256(bytes(t.data.tobytes())).hexdigest(), int(t.data_offset)])
print(json.dumps(out))
"#;

fn python_and_gguf_py(test: &str) -> Option<(PathBuf, PathBuf)> {
    let python = std::env::var_os("FAIRY2I_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let p = cache_dir().join("venv/bin/python");
            p.is_file().then_some(p)
        });
    let Some(python) = python else {
        skip(
            test,
            "no gguf-py environment (run `ffi/build-llama.sh --python-venv` or scripts/test)",
        );
        return None;
    };
    let out = Command::new("bash")
        .arg(workspace().join("ffi/build-llama.sh"))
        .arg("--source-only")
        .output()
        .ok()?;
    let src = PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .trim(),
    );
    if !out.status.success() || !src.join("gguf-py/gguf").is_dir() {
        skip(
            test,
            "the patched llama.cpp source is absent (ffi/build-llama.sh --source-only failed)",
        );
        return None;
    }
    Some((python, src.join("gguf-py")))
}

fn sha256_hex(data: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(data)?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn gguf_py_reads_what_we_write() {
    let test = "gguf_py_reads_what_we_write";
    let Some((python, gguf_py)) = python_and_gguf_py(test) else {
        return;
    };

    let mut md = Metadata::new();
    md.set("general.architecture", Value::str("llama"));
    md.set("t.u8", Value::U8(200));
    md.set("t.i8", Value::I8(-5));
    md.set("t.u16", Value::U16(65000));
    md.set("t.i16", Value::I16(-30000));
    md.set("t.u32", Value::U32(4_000_000_000));
    md.set("t.i32", Value::I32(-2_000_000_000));
    md.set("t.f32", Value::F32(0.5));
    md.set("t.bool", Value::Bool(true));
    md.set("t.str", Value::str("héllo ▁wörld"));
    md.set("t.u64", Value::U64(1 << 40));
    md.set("t.i64", Value::I64(-(1 << 40)));
    md.set("t.f64", Value::F64(-0.25));
    md.set("t.arr_str", Value::str_array(["a", "▁b", ""]));
    md.set(
        "t.arr_i32",
        Value::array(ValueType::I32, vec![Value::I32(1), Value::I32(-2)]),
    );
    md.set(
        "t.arr_nested",
        Value::array(
            ValueType::Array,
            vec![Value::array(
                ValueType::U8,
                vec![Value::U8(1), Value::U8(2)],
            )],
        ),
    );
    md.set("general.alignment", Value::U32(64));

    let specs = vec![
        TensorSpec {
            name: "a.f32".into(),
            dims: vec![3, 2],
            ty: GgmlType::F32,
        },
        TensorSpec {
            name: "b.q8_0".into(),
            dims: vec![64, 3],
            ty: GgmlType::Q8_0,
        },
        TensorSpec {
            name: "c.f2i".into(),
            dims: vec![256, 4],
            ty: GgmlType::F2I_W2,
        },
        TensorSpec {
            name: "d.f16".into(),
            dims: vec![5],
            ty: GgmlType::F16,
        },
    ];
    let data: Vec<Vec<u8>> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n = s.size().expect("size") as usize;
            (0..n).map(|j| ((j * 7 + i * 13) % 251) as u8).collect()
        })
        .collect();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("ours.gguf");
    let mut w = GgufWriter::create(&path, &md, specs.clone()).expect("create");
    for d in &data {
        w.write_tensor(d).expect("write");
    }
    w.finish().expect("finish");

    let out = Command::new(&python)
        .arg("-c")
        .arg(READER)
        .arg(&path)
        .env("PYTHONPATH", &gguf_py)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "gguf-py failed to read our file:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");

    // Key/values: same keys, order, types and values.
    let kv = v["kv"].as_array().expect("kv");
    let ours: Vec<(&str, &Value)> = md.iter().collect();
    assert_eq!(kv.len(), ours.len(), "{kv:?}");
    for ((key, value), theirs) in ours.iter().zip(kv) {
        assert_eq!(theirs[0].as_str(), Some(*key));
        assert_eq!(
            theirs[1][0].as_u64(),
            Some(value.value_type() as u64),
            "type of {key}"
        );
        let expect = match value {
            Value::String(b) => serde_json::json!(String::from_utf8_lossy(b)),
            Value::Array(a) if a.elem_type == ValueType::Array => {
                serde_json::json!({"nested": [9, 9, 0]})
            }
            Value::Array(a) => serde_json::Value::Array(
                a.items
                    .iter()
                    .map(|i| match i {
                        Value::String(b) => serde_json::json!(String::from_utf8_lossy(b)),
                        Value::I32(x) => serde_json::json!(x),
                        other => panic!("unexpected {other:?}"),
                    })
                    .collect(),
            ),
            Value::U8(x) => serde_json::json!(x),
            Value::I8(x) => serde_json::json!(x),
            Value::U16(x) => serde_json::json!(x),
            Value::I16(x) => serde_json::json!(x),
            Value::U32(x) => serde_json::json!(x),
            Value::I32(x) => serde_json::json!(x),
            Value::F32(x) => serde_json::json!(x),
            Value::Bool(x) => serde_json::json!(x),
            Value::U64(x) => serde_json::json!(x),
            Value::I64(x) => serde_json::json!(x),
            Value::F64(x) => serde_json::json!(x),
        };
        assert_eq!(theirs[2], expect, "value of {key}");
    }

    // Tensors: names, type ids, shapes, bytes, 64-byte aligned offsets.
    let ts = v["tensors"].as_array().expect("tensors");
    assert_eq!(ts.len(), specs.len());
    for ((s, d), t) in specs.iter().zip(&data).zip(ts) {
        assert_eq!(t[0].as_str(), Some(s.name.as_str()));
        assert_eq!(t[1].as_u64(), Some(u64::from(s.ty.id())), "{}", s.name);
        let shape: Vec<u64> = t[2]
            .as_array()
            .expect("shape")
            .iter()
            .filter_map(|x| x.as_u64())
            .collect();
        assert_eq!(shape, s.dims, "{}", s.name);
        assert_eq!(
            t[3].as_str(),
            Some(sha256_hex(d).as_str()),
            "bytes of {}",
            s.name
        );
        assert_eq!(
            t[4].as_u64().map(|o| o % 64),
            Some(0),
            "alignment of {}",
            s.name
        );
    }
}
