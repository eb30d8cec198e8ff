//! The architectures `convert` handles: GGUF names of the tensors, hyper-parameter metadata in the
//! reference converter's order, and per-architecture details (one file each).

pub mod llama;
pub mod qwen2;
pub mod qwen3;

use fairy2i_format::gguf::Value;
use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::hf::config::HfConfig;

/// A supported architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `llama` (Llama, Mistral; Q/K rows permuted).
    Llama,
    /// `qwen2` (q/k/v biases).
    Qwen2,
    /// `qwen3` (q_norm/k_norm, explicit head_dim).
    Qwen3,
}

/// What a tensor is, independent of the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// token_embd
    TokenEmbd,
    /// output (lm_head)
    Output,
    /// output_norm
    OutputNorm,
    /// attn_norm
    AttnNorm,
    /// ffn_norm
    FfnNorm,
    /// attn_q
    AttnQ,
    /// attn_k
    AttnK,
    /// attn_v
    AttnV,
    /// attn_output
    AttnOut,
    /// attn_q_norm
    AttnQNorm,
    /// attn_k_norm
    AttnKNorm,
    /// ffn_gate
    FfnGate,
    /// ffn_up
    FfnUp,
    /// ffn_down
    FfnDown,
}

/// A checkpoint tensor mapped to its GGUF name.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Block index.
    pub layer: Option<u64>,
    /// Role.
    pub role: Role,
    /// A `.bias` rather than a `.weight`.
    pub bias: bool,
}

impl Arch {
    /// All architectures.
    pub const ALL: [Arch; 3] = [Arch::Llama, Arch::Qwen2, Arch::Qwen3];

    /// The Hugging Face `architectures[0]` values of this architecture.
    pub fn hf_names(self) -> &'static [&'static str] {
        match self {
            Arch::Llama => llama::HF_ARCHITECTURES,
            Arch::Qwen2 => qwen2::HF_ARCHITECTURES,
            Arch::Qwen3 => qwen3::HF_ARCHITECTURES,
        }
    }

    /// The architecture of an `architectures[0]` value.
    pub fn from_hf(hf: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.hf_names().contains(&hf))
    }

    /// Every supported `architectures[0]` value.
    pub fn supported_hf() -> Vec<&'static str> {
        Arch::ALL
            .iter()
            .flat_map(|a| a.hf_names().iter().copied())
            .collect()
    }

    /// `general.architecture`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }

    /// The architecture with this `general.architecture`, if supported.
    pub fn from_gguf(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The transformers `model_type` assumed when config.json has none.
    pub fn default_model_type(self) -> &'static str {
        self.name()
    }

    /// Whether llama.cpp stores attn_q/attn_k rows permuted for this architecture.
    pub fn permutes_qk(self) -> bool {
        matches!(self, Arch::Llama)
    }

    /// Maps a Hugging Face tensor name. `Ok(None)`: a tensor the reference skips.
    pub fn map(self, hf: &str) -> Option<Option<Mapped>> {
        if hf.ends_with(".attention.masked_bias")
            || hf.ends_with(".attention.bias")
            || hf.ends_with(".rotary_emb.inv_freq")
        {
            return Some(None);
        }
        let (stem, bias) = if let Some(s) = hf.strip_suffix(".weight") {
            (s, false)
        } else if let Some(s) = hf.strip_suffix(".bias") {
            (s, true)
        } else {
            return None;
        };
        let suffix = if bias { "bias" } else { "weight" };
        let global = |role: Role, name: &str| Mapped {
            name: format!("{name}.{suffix}"),
            layer: None,
            role,
            bias,
        };
        match stem {
            "model.embed_tokens" => return Some(Some(global(Role::TokenEmbd, "token_embd"))),
            "lm_head" => return Some(Some(global(Role::Output, "output"))),
            "model.norm" => return Some(Some(global(Role::OutputNorm, "output_norm"))),
            _ => {}
        }
        let rest = stem.strip_prefix("model.layers.")?;
        let (layer, what) = rest.split_once('.')?;
        if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let bid: u64 = layer.parse().ok()?;
        let (role, short) = match what {
            "input_layernorm" => (Role::AttnNorm, "attn_norm"),
            "post_attention_layernorm" => (Role::FfnNorm, "ffn_norm"),
            "self_attn.q_proj" => (Role::AttnQ, "attn_q"),
            "self_attn.k_proj" => (Role::AttnK, "attn_k"),
            "self_attn.v_proj" => (Role::AttnV, "attn_v"),
            "self_attn.o_proj" => (Role::AttnOut, "attn_output"),
            "mlp.gate_proj" => (Role::FfnGate, "ffn_gate"),
            "mlp.up_proj" => (Role::FfnUp, "ffn_up"),
            "mlp.down_proj" => (Role::FfnDown, "ffn_down"),
            "self_attn.q_norm" if self == Arch::Qwen3 => (Role::AttnQNorm, "attn_q_norm"),
            "self_attn.k_norm" if self == Arch::Qwen3 => (Role::AttnKNorm, "attn_k_norm"),
            _ => return None,
        };
        Some(Some(Mapped {
            name: format!("blk.{bid}.{short}.{suffix}"),
            layer: Some(bid),
            role,
            bias,
        }))
    }

    /// The PyTorch shape config.json implies for a tensor.
    pub fn expected_shape(self, m: &Mapped, cfg: &HfConfig) -> Result<Vec<u64>> {
        let hidden = cfg.u64("hidden_size")?;
        let vocab = cfg.u64("vocab_size")?;
        let ff = cfg.u64("intermediate_size")?;
        let hd = cfg.effective_head_dim()?;
        let q = cfg.u64("num_attention_heads")? * hd;
        let kv = cfg.u64("num_key_value_heads")? * hd;
        let w = |rows: u64, cols: u64| if m.bias { vec![rows] } else { vec![rows, cols] };
        Ok(match m.role {
            Role::TokenEmbd | Role::Output => w(vocab, hidden),
            Role::OutputNorm | Role::AttnNorm | Role::FfnNorm => vec![hidden],
            Role::AttnQNorm | Role::AttnKNorm => vec![hd],
            Role::AttnQ => w(q, hidden),
            Role::AttnK | Role::AttnV => w(kv, hidden),
            Role::AttnOut => w(hidden, q),
            Role::FfnGate | Role::FfnUp => w(ff, hidden),
            Role::FfnDown => w(hidden, ff),
        })
    }

    /// The hyper-parameter KVs from `block_count` to `general.file_type` and the architecture's
    /// extras, in the reference converter's order.
    pub fn hparam_kvs(self, cfg: &HfConfig, file_type: u32) -> Result<Vec<(String, Value)>> {
        let a = self.name();
        let mut kv: Vec<(String, Value)> = Vec::new();
        // A null value reaches these only where the reference converter fails on it.
        let u32_of = |field: &str, v: &Json| -> Result<Value> {
            if v.is_null() {
                return Err(cfg.field_error(field, "is null"));
            }
            v.as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .map(Value::U32)
                .ok_or_else(|| cfg.field_error(field, "must be an integer that fits in u32"))
        };
        let f32_of = |field: &str, v: &Json| -> Result<Value> {
            if v.is_null() {
                return Err(cfg.field_error(field, "is null"));
            }
            v.as_f64()
                .map(|x| Value::F32(x as f32))
                .ok_or_else(|| cfg.field_error(field, "must be a number"))
        };
        // `find_hparam` (the first key present, even if null); a null block count fails there.
        let block_count = cfg
            .find_present(&["n_layers", "num_hidden_layers", "n_layer", "num_layers"])
            .ok_or_else(|| cfg.field_error("num_hidden_layers", "is missing"))?;
        kv.push((
            format!("{a}.block_count"),
            u32_of(block_count.0, block_count.1)?,
        ));
        let u32_keys: [(&str, &[&str]); 5] = [
            (
                "context_length",
                &[
                    "max_position_embeddings",
                    "n_ctx",
                    "n_positions",
                    "max_length",
                    "max_sequence_length",
                    "model_max_length",
                ],
            ),
            ("embedding_length", &["hidden_size", "n_embd", "dim"]),
            (
                "feed_forward_length",
                &[
                    "prefix_dense_intermediate_size",
                    "dense_intermediate_size",
                    "intermediate_size",
                    "n_inner",
                    "hidden_dim",
                ],
            ),
            (
                "attention.head_count",
                &["num_attention_heads", "n_head", "n_heads"],
            ),
            (
                "attention.head_count_kv",
                &["num_key_value_heads", "n_kv_heads"],
            ),
        ];
        for (key, names) in u32_keys {
            match cfg.find_present(names) {
                Some((field, v)) if !v.is_null() => {
                    kv.push((format!("{a}.{key}"), u32_of(field, v)?))
                }
                // The reference leaves the key out, and llama.cpp cannot load such a file (only
                // head_count_kv has a default there: the head count).
                found if key != "attention.head_count_kv" => {
                    return Err(required(cfg, names, found));
                }
                _ => {}
            }
        }
        // Rope scaling (transformers 4.x `rope_scaling`, mirrored rope_theta etc.):
        // `hparams.get("rope_parameters", hparams.get("rope_scaling")) or {}`, so a null
        // `rope_parameters` hides `rope_scaling`.
        let (rope_key, rope) = match cfg.params.get_key_value("rope_parameters") {
            Some((k, v)) => (k.as_str(), v),
            None => (
                "rope_scaling",
                cfg.params.get("rope_scaling").unwrap_or(&Json::Null),
            ),
        };
        let rope = match rope {
            Json::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        // The llama class calls `rope_params.get("rope_type", '').lower()`: a null rope_type
        // (left null by the config class) makes it fail.
        if self == Arch::Llama && rope.get("rope_type").is_some_and(Json::is_null) {
            return Err(cfg.field_error(&format!("{rope_key}.rope_type"), "is null"));
        }
        // A legacy "type" stands in for a *missing* "rope_type" (a null one stays null; the config
        // classes that copy "type" over "rope_type" already did so in `HfConfig::load`).
        let rope_type = match rope.get("rope_type") {
            Some(t) => t.as_str(),
            None => rope.get("type").and_then(Json::as_str),
        };
        let factor = rope.get("factor").filter(|v| !v.is_null());
        match (rope_type, factor) {
            (None, _) | (Some("dynamic"), _) | (Some("default"), _) => {}
            (Some("linear"), Some(f)) => {
                kv.push((format!("{a}.rope.scaling.type"), Value::str("linear")));
                kv.push((
                    format!("{a}.rope.scaling.factor"),
                    f32_of("rope_scaling.factor", f)?,
                ));
            }
            (Some("yarn"), Some(f)) => {
                kv.push((format!("{a}.rope.scaling.type"), Value::str("yarn")));
                kv.push((
                    format!("{a}.rope.scaling.factor"),
                    f32_of("rope_scaling.factor", f)?,
                ));
                let orig = rope
                    .get("original_max_position_embeddings")
                    .or_else(|| cfg.params.get("original_max_position_embeddings"))
                    .ok_or_else(|| {
                        cfg.field_error(
                            "rope_scaling.original_max_position_embeddings",
                            "is missing",
                        )
                    })?;
                kv.push((
                    format!("{a}.rope.scaling.original_context_length"),
                    u32_of("rope_scaling.original_max_position_embeddings", orig)?,
                ));
                let extras: [(&str, &[&str]); 4] = [
                    ("yarn_ext_factor", &["extrapolation_factor"]),
                    ("yarn_attn_factor", &["attention_factor", "attn_factor"]),
                    ("yarn_beta_fast", &["beta_fast"]),
                    ("yarn_beta_slow", &["beta_slow"]),
                ];
                for (key, names) in extras {
                    if let Some(v) = names
                        .iter()
                        .find_map(|n| rope.get(*n))
                        .filter(|v| !v.is_null())
                    {
                        kv.push((
                            format!("{a}.rope.scaling.{key}"),
                            f32_of("rope_scaling", v)?,
                        ));
                    }
                }
            }
            (Some("linear") | Some("yarn"), None) => {}
            (Some(other), _) => {
                return Err(Error::UnsupportedRopeScaling {
                    path: cfg.path.clone(),
                    kind: other.to_string(),
                })
            }
        }
        // A rope_theta key inside the rope dict wins, even a null one (then no freq_base);
        // otherwise the global one is mirrored into it.
        let theta = match rope.get("rope_theta") {
            Some(v) => Some(("rope_theta".to_string(), v.clone())).filter(|(_, v)| !v.is_null()),
            None => cfg
                .find(&[
                    "global_rope_theta",
                    "rope_global_theta",
                    "rope_theta_global",
                    "rope_theta",
                    "rotary_emb_base",
                ])
                .map(|(k, v)| (k.to_string(), v.clone())),
        };
        if let Some((field, v)) = theta {
            kv.push((format!("{a}.rope.freq_base"), f32_of(&field, &v)?));
        }
        // Required by llama.cpp's llama, qwen2 and qwen3 loaders, as above.
        let eps_names = ["rms_norm_eps", "norm_eps"];
        match cfg.find_present(&eps_names) {
            Some((field, v)) if !v.is_null() => kv.push((
                format!("{a}.attention.layer_norm_rms_epsilon"),
                f32_of(field, v)?,
            )),
            found => return Err(required(cfg, &eps_names, found)),
        }
        if let Some((field, v)) =
            cfg.find(&["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"])
        {
            kv.push((
                format!("{a}.attention.layer_norm_epsilon"),
                f32_of(field, v)?,
            ));
        }
        if let Some(hd) = cfg.params.get("head_dim").filter(|v| !v.is_null()) {
            kv.push((format!("{a}.attention.key_length"), u32_of("head_dim", hd)?));
            kv.push((
                format!("{a}.attention.value_length"),
                u32_of("head_dim", hd)?,
            ));
        }
        kv.push(("general.file_type".into(), Value::U32(file_type)));
        if self == Arch::Llama {
            kv.extend(llama::extra_kvs(cfg)?);
        }
        Ok(kv)
    }
}

/// The error for a hyper-parameter whose GGUF key the reference converter would leave out although
/// llama.cpp needs it: `found` is the first of `names` present (null), or none of them is.
fn required(cfg: &HfConfig, names: &[&str], found: Option<(&str, &Json)>) -> Error {
    match found {
        Some((field, _)) => cfg.field_error(field, "is null (llama.cpp needs it)"),
        None => cfg.field_error(names.first().copied().unwrap_or("?"), "is missing"),
    }
}
