//! Writes the seed inputs of the fuzz targets into `fuzz/seeds/<target>/` (committed; rerun after a
//! format change): `cargo run --bin make_seeds -- [REFERENCE_GGUF_DIR]` from `fuzz/`.
//!
//! GGUF seeds are built with our own writer: every metadata value type, v2 and v3, a non-default
//! alignment, and tensors of several block types, plus a slimmed copy of each reference fixture
//! (metadata arrays cut to 16 items, the three smallest tensors) when the fixtures are at hand.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use fairy2i_format::gguf::{Array, Gguf, GgufWriter, Metadata, TensorSpec, Value, ValueType};
use fairy2i_format::GgmlType;

type Tensors = Vec<(TensorSpec, Vec<u8>)>;

fn write_gguf(path: &Path, version: u32, metadata: &Metadata, tensors: &Tensors) {
    let specs = tensors.iter().map(|(s, _)| s.clone()).collect();
    let mut w = GgufWriter::create_versioned(path, version, metadata, specs).expect("create");
    for (_, data) in tensors {
        w.write_tensor(data).expect("write tensor");
    }
    w.finish().expect("finish");
}

fn spec(name: &str, dims: &[u64], ty: GgmlType) -> (TensorSpec, Vec<u8>) {
    let spec = TensorSpec {
        name: name.into(),
        dims: dims.to_vec(),
        ty,
    };
    let size = ty.tensor_size(dims).expect("size") as usize;
    // Bytes that give finite f16 scales (0x3c00 = 1.0 in little-endian pairs 00 3c).
    let data = (0..size)
        .map(|i| if i % 2 == 0 { (i % 7) as u8 } else { 0x3c })
        .collect();
    (spec, data)
}

fn all_types_metadata() -> Metadata {
    let mut m = Metadata::new();
    m.set("general.architecture", Value::str("llama"));
    m.set("general.name", Value::str("fuzz seed"));
    m.set("t.u8", Value::U8(7));
    m.set("t.i8", Value::I8(-7));
    m.set("t.u16", Value::U16(700));
    m.set("t.i16", Value::I16(-700));
    m.set("t.u32", Value::U32(70000));
    m.set("t.i32", Value::I32(-70000));
    m.set("t.f32", Value::F32(0.5));
    m.set("t.bool", Value::Bool(true));
    m.set("t.u64", Value::U64(1 << 40));
    m.set("t.i64", Value::I64(-(1 << 40)));
    m.set("t.f64", Value::F64(-0.25));
    m.set("t.strs", Value::str_array(["a", "bc", ""]));
    m.set(
        "t.u32s",
        Value::array(ValueType::U32, vec![Value::U32(1), Value::U32(2)]),
    );
    m.set("t.empty", Value::array(ValueType::F32, vec![]));
    let inner = Value::array(ValueType::I8, vec![Value::I8(1), Value::I8(-1)]);
    m.set(
        "t.nested",
        Value::array(ValueType::Array, vec![inner.clone(), inner]),
    );
    m
}

fn synthetic(dir: &Path) {
    let m = all_types_metadata();
    let tensors: Tensors = vec![
        spec("a.f32", &[4, 2], GgmlType::F32),
        spec("b.q8_0", &[32], GgmlType::Q8_0),
        spec("c.f16", &[8, 1, 1, 2], GgmlType::F16),
    ];
    write_gguf(&dir.join("types-v3.gguf"), 3, &m, &tensors);
    write_gguf(&dir.join("types-v2.gguf"), 2, &m, &tensors);

    let mut m = Metadata::new();
    m.set("general.alignment", Value::U32(64));
    let tensors: Tensors = vec![
        spec("k.q4_k", &[256], GgmlType::Q4_K),
        spec("k.q6_k", &[256], GgmlType::Q6_K),
        spec("l.q4_0", &[64], GgmlType::Q4_0),
        spec("l.bf16", &[3], GgmlType::BF16),
    ];
    write_gguf(&dir.join("align64.gguf"), 3, &m, &tensors);

    let mut m = Metadata::new();
    m.set("fairy2i.format_version", Value::U32(1));
    m.set("fairy2i.stages", Value::U32(2));
    let tensors: Tensors = vec![
        spec("w.f2i", &[256, 2], GgmlType::F2I_W2),
        spec("n.f32", &[2], GgmlType::F32),
    ];
    write_gguf(&dir.join("f2i.gguf"), 3, &m, &tensors);

    write_gguf(&dir.join("empty.gguf"), 3, &Metadata::new(), &Vec::new());
}

/// Cuts arrays to their first 16 items, recursively.
fn slim(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(Array {
            elem_type: a.elem_type,
            items: a.items.iter().take(16).map(slim).collect(),
        }),
        v => v.clone(),
    }
}

fn from_reference(src: &Path, dst: &Path) {
    let bytes = std::fs::read(src).expect("read reference");
    let gguf = Gguf::parse(&bytes).expect("parse reference");
    let mut m = Metadata::new();
    for (k, v) in gguf.metadata.iter() {
        m.set(k, slim(v));
    }
    let mut infos: Vec<_> = gguf.tensors.iter().collect();
    infos.sort_by_key(|t| t.size);
    let tensors: Tensors = infos
        .iter()
        .take(3)
        .map(|t| {
            let s = TensorSpec {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ty: t.ty,
            };
            (s, gguf.tensor_data(t).to_vec())
        })
        .collect();
    write_gguf(dst, gguf.version, &m, &tensors);
}

fn safetensors_seeds(dir: &Path) {
    use safetensors::tensor::{Dtype, TensorView};
    let f32s: Vec<u8> = [1.0f32, -2.0, 0.5, 0.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let bf16s: Vec<u8> = vec![0x80, 0x3f, 0x00, 0xc0];
    let mut views = HashMap::new();
    views.insert(
        "model.embed_tokens.weight".to_string(),
        TensorView::new(Dtype::F32, vec![2, 2], &f32s).unwrap(),
    );
    views.insert(
        "model.norm.weight".to_string(),
        TensorView::new(Dtype::BF16, vec![2], &bf16s).unwrap(),
    );
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let bytes = safetensors::serialize(&views, &Some(meta)).unwrap();
    std::fs::write(dir.join("two-tensors.safetensors"), bytes).unwrap();
    let empty: HashMap<String, TensorView> = HashMap::new();
    std::fs::write(
        dir.join("empty.safetensors"),
        safetensors::serialize(&empty, &None).unwrap(),
    )
    .unwrap();
}

const CONFIG_JSON: &str = r#"{
  "architectures": ["Qwen2ForCausalLM"],
  "model_type": "qwen2",
  "hidden_size": 64,
  "intermediate_size": 128,
  "num_attention_heads": 4,
  "num_key_value_heads": 2,
  "num_hidden_layers": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "rope_scaling": null,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "vocab_size": 256,
  "max_position_embeddings": 32768
}
"#;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let gguf_dir = root.join("gguf_parse");
    for d in ["gguf_parse", "safetensors_header", "config_json"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    synthetic(&gguf_dir);
    let reference = std::env::args().nth(1).map(PathBuf::from);
    if let Some(reference) = reference {
        for name in [
            "llama-spm-tiny.f16.gguf",
            "qwen2-tiny.bf16.gguf",
            "llama-tiny.f32.gguf",
        ] {
            let src = reference.join(name);
            from_reference(&src, &gguf_dir.join(format!("slim-{name}")));
        }
    }
    safetensors_seeds(&root.join("safetensors_header"));
    std::fs::write(root.join("config_json/qwen2-config.json"), CONFIG_JSON).unwrap();
    std::fs::write(
        root.join("config_json/small.json"),
        r#"[1, -2.5e3, "x\u00e9", {"a": [true, false, null]}]"#,
    )
    .unwrap();
}
