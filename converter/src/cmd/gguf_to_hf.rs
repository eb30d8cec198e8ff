//! Hidden `fairy2i gguf-to-hf`: dequantizes a GGUF (`llama`, `qwen2`, `qwen3`) into a Hugging Face
//! style folder — `config.json` derived from the KVs, bf16 `model-0000i-of-0000n.safetensors` shards
//! with HF tensor names and `model.safetensors.index.json` — so `convert` can be benchmarked on a real
//! model when only a quantized GGUF is at hand. The llama Q/K row permutation is undone. No tokenizer
//! is written (convert it with `--no-tokenizer`).

use std::path::Path;

use fairy2i_format::convert::tensor_to_f32;
use fairy2i_format::gguf::{Gguf, MappedGguf};
use serde_json::json;

use crate::arch::{llama, Arch};
use crate::cli::GgufToHfArgs;
use crate::error::{Error, FormatContext, IoContext, Result};

/// The HF name of a GGUF tensor name.
fn hf_name(gguf: &str) -> Option<String> {
    let (stem, suffix) = gguf.rsplit_once('.')?;
    let hf = match stem {
        "token_embd" => "model.embed_tokens".to_string(),
        "output" => "lm_head".to_string(),
        "output_norm" => "model.norm".to_string(),
        _ => {
            let rest = stem.strip_prefix("blk.")?;
            let (n, what) = rest.split_once('.')?;
            let part = match what {
                "attn_norm" => "input_layernorm",
                "ffn_norm" => "post_attention_layernorm",
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_output" => "self_attn.o_proj",
                "attn_q_norm" => "self_attn.q_norm",
                "attn_k_norm" => "self_attn.k_norm",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                _ => return None,
            };
            format!("model.layers.{n}.{part}")
        }
    };
    Some(format!("{hf}.{suffix}"))
}

fn key_error(path: &Path, key: &str) -> Error {
    Error::GgufKey {
        path: path.to_path_buf(),
        key: key.to_string(),
        problem: "is missing or has the wrong type",
    }
}

/// config.json from the GGUF's KVs.
fn config_json(g: &Gguf<'_>, arch: Arch, path: &Path) -> Result<serde_json::Value> {
    let a = arch.name();
    let u = |k: &str| -> Result<u64> {
        let key = format!("{a}.{k}");
        g.metadata
            .get_u64(&key)
            .ok_or_else(|| key_error(path, &key))
    };
    let f = |k: &str| g.metadata.get(&format!("{a}.{k}")).and_then(|v| v.as_f64());
    let vocab = g
        .tensor("token_embd.weight")
        .and_then(|t| t.dims.get(1).copied())
        .ok_or_else(|| key_error(path, "token_embd.weight"))?;
    let n_head = u("attention.head_count")?;
    let mut c = json!({
        "architectures": [arch.hf_names().first().copied().unwrap_or_default()],
        "model_type": a,
        "hidden_size": u("embedding_length")?,
        "intermediate_size": u("feed_forward_length")?,
        "num_hidden_layers": u("block_count")?,
        "num_attention_heads": n_head,
        "num_key_value_heads": u("attention.head_count_kv").unwrap_or(n_head),
        "max_position_embeddings": u("context_length")?,
        "vocab_size": vocab,
        "tie_word_embeddings": g.tensor("output.weight").is_none(),
        "torch_dtype": "bfloat16",
    });
    if let Some(obj) = c.as_object_mut() {
        if let Some(eps) = f("attention.layer_norm_rms_epsilon") {
            obj.insert("rms_norm_eps".into(), json!(eps as f32));
        }
        if let Some(theta) = f("rope.freq_base") {
            obj.insert("rope_theta".into(), json!(theta as f32));
        }
        if arch != Arch::Qwen2 {
            if let Ok(hd) = u("attention.key_length") {
                obj.insert("head_dim".into(), json!(hd));
            }
        }
    }
    Ok(c)
}

/// Writes one shard of bf16 tensors.
fn write_shard(path: &Path, tensors: &[(String, Vec<usize>, Vec<u8>)]) -> Result<()> {
    let mut views = Vec::with_capacity(tensors.len());
    for (name, shape, data) in tensors {
        let v = safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, shape.clone(), data)
            .map_err(|source| Error::Safetensors {
                path: path.to_path_buf(),
                source,
            })?;
        views.push((name.clone(), v));
    }
    safetensors::serialize_to_file(views, &None, path).map_err(|source| Error::Safetensors {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs `gguf-to-hf`.
pub fn run(args: &GgufToHfArgs) -> Result<()> {
    super::init_threads(args.threads)?;
    let in_path = args.input.as_path();
    let mapped = MappedGguf::open(in_path)?;
    let g = mapped.parse()?;
    let arch_name = g
        .metadata
        .get_str("general.architecture")
        .ok_or_else(|| key_error(in_path, "general.architecture"))?;
    let arch = Arch::from_gguf(arch_name).ok_or_else(|| Error::UnsupportedArchitecture {
        path: in_path.to_path_buf(),
        arch: arch_name.to_string(),
        supported: "llama, qwen2, qwen3".into(),
    })?;
    let out = args.output_dir.as_path();
    std::fs::create_dir_all(out).at(out)?;
    let config = config_json(&g, arch, in_path)?;
    let n_head = config["num_attention_heads"].as_u64().unwrap_or(1) as usize;
    let n_head_kv = config["num_key_value_heads"].as_u64().unwrap_or(1) as usize;

    // Group tensors into shards of at most shard_mib (bf16 bytes), in file order.
    let limit = args.shard_mib.saturating_mul(1 << 20).max(1);
    let mut groups: Vec<Vec<usize>> = vec![Vec::new()];
    let mut size = 0u64;
    for (i, t) in g.tensors.iter().enumerate() {
        let bytes = t.n_elements() * 2;
        if size > 0 && size + bytes > limit {
            groups.push(Vec::new());
            size = 0;
        }
        size += bytes;
        if let Some(last) = groups.last_mut() {
            last.push(i);
        }
    }
    let n = groups.len();
    let mut weight_map = serde_json::Map::new();
    let mut total = 0u64;
    for (si, group) in groups.iter().enumerate() {
        let file = format!("model-{:05}-of-{:05}.safetensors", si + 1, n);
        let mut tensors = Vec::new();
        for &i in group {
            let Some(t) = g.tensors.get(i) else { continue };
            let Some(name) = hf_name(&t.name) else {
                return Err(Error::UnmappedTensor {
                    path: in_path.to_path_buf(),
                    tensor: t.name.clone(),
                    arch: arch.name(),
                });
            };
            let w = tensor_to_f32(t.ty, &t.dims, g.tensor_data(t))
                .map_err(|e| e.in_tensor(&t.name))
                .at_file(in_path)?;
            let ne0 = t.ne0() as usize;
            let rows = t.n_rows() as usize;
            // Undo llama's Q/K permutation: HF row perm[r] is GGUF row r.
            let heads = match (
                arch.permutes_qk(),
                t.name.ends_with(".attn_q.weight"),
                t.name.ends_with(".attn_k.weight"),
            ) {
                (true, true, _) => Some(n_head),
                (true, _, true) => Some(n_head_kv),
                _ => None,
            };
            let mut order: Vec<usize> = (0..rows).collect();
            if let Some(perm) = heads.and_then(|h| llama::qk_permutation(rows, h)) {
                for (r, &src) in perm.iter().enumerate() {
                    if let Some(slot) = order.get_mut(src) {
                        *slot = r;
                    }
                }
            }
            let mut bytes = Vec::with_capacity(w.len() * 2);
            for &r in &order {
                for &x in w.get(r * ne0..(r + 1) * ne0).unwrap_or(&[]) {
                    bytes.extend_from_slice(&half::bf16::from_f32(x).to_bits().to_le_bytes());
                }
            }
            let shape: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
            total += bytes.len() as u64;
            weight_map.insert(name.clone(), json!(file));
            tensors.push((name, shape, bytes));
        }
        write_shard(&out.join(&file), &tensors)?;
    }
    let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    let write_json = |name: &str, v: &serde_json::Value| -> Result<()> {
        let p = out.join(name);
        let text = serde_json::to_string_pretty(v).unwrap_or_default();
        std::fs::write(&p, text).at(&p)
    };
    write_json("model.safetensors.index.json", &index)?;
    write_json("config.json", &config)?;
    super::print_err(&format!(
        "wrote {} ({} shards, {} bytes of bf16)\n",
        out.display(),
        n,
        total
    ));
    Ok(())
}
