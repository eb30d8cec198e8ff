//! `config.json` as transformers' `AutoConfig(...).to_dict()` sees it: the file's keys, plus the
//! defaults the config class fills in for the keys that reach the GGUF (llama.cpp's converter reads
//! hyper-parameters from that dict, so e.g. a Llama config without `head_dim` still gets
//! `key_length`). Also `generation_config.json` (sampling keys).
//!
//! Null fields (transformers ≥ 4.57 writes `"head_dim": null`, `"sliding_window": null`, …) follow
//! the same path as in llama.cpp b11434's `convert_hf_to_gguf.py` under transformers 4.57.6:
//! - a key the file *lacks* gets the class default, but a key the file sets to `null` is passed to
//!   the class as `None` and stays `None`, except where the class itself replaces `None`
//!   (`num_key_value_heads` → `num_attention_heads` in every class; llama's `head_dim` →
//!   `hidden_size / num_attention_heads`);
//! - `find_hparam` takes the first key *present*, so a null one hides the keys after it, and
//!   `hparams.get(k)` of a null key is `None`: the GGUF key it feeds is left out;
//! - `model_type: null` (or one transformers does not know) makes `AutoConfig` fail, and the
//!   converter then reads `config.json` as it is, with no class defaults;
//! - a null field that the reference converter cannot do without (block count, sizes, head counts,
//!   `vocab_size` for llama, `text_config`) makes it fail, and some (`max_position_embeddings`,
//!   `rms_norm_eps`, `intermediate_size`, …) make it leave out a key llama.cpp needs to load the
//!   file; `fairy2i convert` refuses such a config with an error naming the field (it needs the
//!   sizes for the tensor shapes too). `converter/tests/null_fields.rs` has every case.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use crate::arch::Arch;
use crate::error::{Error, IoContext, Result};

/// A loaded `config.json`.
#[derive(Debug, Clone)]
pub struct HfConfig {
    /// The config.json path (for messages).
    pub path: PathBuf,
    /// The file's keys with the config class's defaults filled in.
    pub params: Map<String, Json>,
    /// The architecture it maps to.
    pub arch: Arch,
}

/// Reads and parses a JSON file.
pub fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read(path).at(path)?;
    serde_json::from_slice(&text).map_err(|source| Error::InvalidJson {
        path: path.to_path_buf(),
        source,
    })
}

impl HfConfig {
    /// Loads `<dir>/config.json`.
    pub fn load(dir: &Path) -> Result<HfConfig> {
        let path = dir.join("config.json");
        if !path.is_file() {
            return Err(Error::ConfigMissing { path });
        }
        let json = read_json(&path)?;
        let Json::Object(mut params) = json else {
            return Err(Error::ConfigField {
                path,
                field: "(top level)".into(),
                problem: "must be a JSON object".into(),
            });
        };
        let hf_arch = match params.get("architectures") {
            Some(Json::Array(a)) => match a.first() {
                Some(Json::String(s)) => s.clone(),
                _ => {
                    return Err(Error::ConfigField {
                        path,
                        field: "architectures".into(),
                        problem: "must be a non-empty list of strings".into(),
                    })
                }
            },
            other => {
                return Err(Error::ConfigField {
                    path,
                    field: "architectures".into(),
                    problem: match other {
                        None => "is missing",
                        Some(Json::Null) => "is null",
                        Some(_) => "must be a non-empty list of strings",
                    }
                    .into(),
                })
            }
        };
        let Some(arch) = Arch::from_hf(&hf_arch) else {
            return Err(Error::UnsupportedArchitecture {
                path,
                arch: hf_arch,
                supported: Arch::supported_hf().join(", "),
            });
        };
        // transformers picks the config class by `model_type`; without one it matches class names
        // against the folder path, approximated here by the architecture's own class.
        let model_type = match params.get("model_type") {
            None => Some(arch.default_model_type().to_string()),
            Some(Json::String(s)) => Some(s.clone()),
            Some(_) => None,
        };
        if let Some(model_type) = model_type {
            fill_defaults(&mut params, &model_type);
        }
        let cfg = HfConfig { path, params, arch };
        // `hparams.get("text_config", {})` is None: the reference converter fails.
        if cfg.params.get("text_config").is_some_and(Json::is_null) {
            return Err(cfg.field_error("text_config", "is null"));
        }
        // The fields every supported architecture needs, checked once here.
        for field in [
            "num_hidden_layers",
            "hidden_size",
            "num_attention_heads",
            "num_key_value_heads",
            "intermediate_size",
            "vocab_size",
        ] {
            let v = cfg.u64(field)?;
            if v == 0 {
                return Err(cfg.field_error(field, "must be positive"));
            }
        }
        let heads = cfg.u64("num_attention_heads")?;
        if cfg.params.get("head_dim").is_none_or(Json::is_null)
            && cfg.u64("hidden_size")? % heads != 0
        {
            return Err(cfg.field_error("hidden_size", "is not a multiple of num_attention_heads"));
        }
        if heads % cfg.u64("num_key_value_heads")? != 0 {
            return Err(
                cfg.field_error("num_key_value_heads", "does not divide num_attention_heads")
            );
        }
        Ok(cfg)
    }

    /// An error about `field`.
    pub fn field_error(&self, field: &str, problem: &str) -> Error {
        Error::ConfigField {
            path: self.path.clone(),
            field: field.to_string(),
            problem: problem.to_string(),
        }
    }

    /// The first of `keys` present, even with a null value, as llama.cpp's `find_hparam`.
    pub fn find_present(&self, keys: &[&str]) -> Option<(&str, &Json)> {
        keys.iter()
            .find_map(|k| self.params.get_key_value(*k))
            .map(|(k, v)| (k.as_str(), v))
    }

    /// As [`HfConfig::find_present`], but `None` when that key is null (llama.cpp's
    /// `if (x := find_hparam(keys, optional=True)) is not None`): a null key hides the keys after it.
    pub fn find(&self, keys: &[&str]) -> Option<(&str, &Json)> {
        self.find_present(keys).filter(|(_, v)| !v.is_null())
    }

    /// A required non-negative integer field.
    pub fn u64(&self, field: &str) -> Result<u64> {
        match self.params.get(field) {
            None => Err(self.field_error(field, "is missing")),
            Some(Json::Null) => Err(self.field_error(field, "is null")),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| self.field_error(field, "must be a non-negative integer")),
        }
    }

    /// An optional non-negative integer field.
    pub fn opt_u64(&self, field: &str) -> Result<Option<u64>> {
        match self.params.get(field) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.field_error(field, "must be a non-negative integer")),
        }
    }

    /// `head_dim` when the config (with defaults) has one.
    pub fn head_dim(&self) -> Result<Option<u64>> {
        self.opt_u64("head_dim")
    }

    /// The head size used for shapes: `head_dim`, else hidden_size / num_attention_heads.
    pub fn effective_head_dim(&self) -> Result<u64> {
        match self.head_dim()? {
            Some(h) => Ok(h),
            None => Ok(self.u64("hidden_size")? / self.u64("num_attention_heads")?),
        }
    }

    /// Whether the output projection is tied to the token embeddings (a null
    /// `tie_word_embeddings` is `None`, which transformers treats as not tied).
    pub fn tied_embeddings(&self) -> bool {
        self.params
            .get("tie_word_embeddings")
            .and_then(Json::as_bool)
            .unwrap_or(false)
    }
}

/// What the config class of `model_type` (transformers 4.57.6) does to the keys the GGUF reads: a
/// missing key gets the class default, a null key stays null unless the class replaces it. A
/// `model_type` transformers does not know makes `AutoConfig` fail; the reference converter then
/// reads the file as it is, so nothing is filled in.
fn fill_defaults(params: &mut Map<String, Json>, model_type: &str) {
    // (vocab, hidden, intermediate, layers, heads, max_position_embeddings, kv heads when missing)
    let (vocab, hidden, inter, layers, heads, ctx, kv_missing) = match model_type {
        // LlamaConfig: a missing num_key_value_heads is None, then num_attention_heads.
        "llama" => (32000, 4096, 11008, 32, 32, 2048, None),
        "mistral" => (32000, 4096, 14336, 32, 32, 4096 * 32, Some(8)),
        "qwen2" | "qwen3" => (151936, 4096, 22016, 32, 32, 32768, Some(32)),
        _ => return,
    };
    let default = |p: &mut Map<String, Json>, k: &str, v: Json| {
        if !p.contains_key(k) {
            p.insert(k.to_string(), v);
        }
    };
    default(params, "vocab_size", vocab.into());
    default(params, "hidden_size", hidden.into());
    default(params, "intermediate_size", inter.into());
    default(params, "num_hidden_layers", layers.into());
    default(params, "num_attention_heads", heads.into());
    default(params, "max_position_embeddings", ctx.into());
    default(params, "rms_norm_eps", 1e-6.into());
    default(params, "rope_theta", 10000.0.into());
    if let Some(kv) = kv_missing {
        default(params, "num_key_value_heads", kv.into());
    }
    // Every class: `if num_key_value_heads is None: num_key_value_heads = num_attention_heads`.
    if params.get("num_key_value_heads").is_none_or(Json::is_null) {
        let n_head = params
            .get("num_attention_heads")
            .cloned()
            .unwrap_or(Json::Null);
        params.insert("num_key_value_heads".into(), n_head);
    }
    match model_type {
        // LlamaConfig: head_dim = hidden_size // num_attention_heads when missing or null (when
        // either is not an integer the class raises, AutoConfig fails, and the file is read as
        // it is).
        "llama" if params.get("head_dim").is_none_or(Json::is_null) => {
            let h = params.get("hidden_size").and_then(Json::as_u64);
            let n = params.get("num_attention_heads").and_then(Json::as_u64);
            match (h, n) {
                (Some(h), Some(n)) if n > 0 => {
                    params.insert("head_dim".into(), Json::from(h / n));
                }
                _ => {}
            }
        }
        // MistralConfig keeps head_dim as given (missing: None); Qwen2Config has no head_dim.
        "qwen3" => default(params, "head_dim", 128.into()),
        _ => {}
    }
    // LlamaConfig, Qwen2Config and Qwen3Config copy a legacy rope_scaling "type" over "rope_type".
    if matches!(model_type, "llama" | "qwen2" | "qwen3") {
        if let Some(Json::Object(rope)) = params.get_mut("rope_scaling") {
            if let Some(t) = rope.get("type").cloned() {
                rope.insert("rope_type".into(), t);
            }
        }
    }
}

/// The `general.sampling.*` keys from `generation_config.json`, in gguf-py's order. A missing or
/// unreadable file gives none (as in gguf-py).
pub fn sampling_kvs(dir: &Path) -> Vec<(&'static str, fairy2i_format::gguf::Value)> {
    use fairy2i_format::gguf::Value;
    let path = dir.join("generation_config.json");
    let Ok(Json::Object(gen)) = std::fs::read(&path)
        .map_err(|_| ())
        .and_then(|b| serde_json::from_slice::<Json>(&b).map_err(|_| ()))
    else {
        return Vec::new();
    };
    enum Kind {
        Str,
        I32,
        F32,
    }
    let table: [(&str, &[&str], Kind); 12] = [
        ("general.sampling.sequence", &["sequence"], Kind::Str),
        ("general.sampling.top_k", &["top_k"], Kind::I32),
        ("general.sampling.top_p", &["top_p"], Kind::F32),
        ("general.sampling.min_p", &["min_p"], Kind::F32),
        (
            "general.sampling.xtc_probability",
            &["xtc_probability"],
            Kind::F32,
        ),
        (
            "general.sampling.xtc_threshold",
            &["xtc_threshold"],
            Kind::F32,
        ),
        ("general.sampling.temp", &["temperature"], Kind::F32),
        (
            "general.sampling.penalty_last_n",
            &["penalty_last_n"],
            Kind::I32,
        ),
        (
            "general.sampling.penalty_repeat",
            &["penalty_repeat", "repetition_penalty"],
            Kind::F32,
        ),
        ("general.sampling.mirostat", &["mirostat"], Kind::I32),
        (
            "general.sampling.mirostat_tau",
            &["mirostat_tau"],
            Kind::F32,
        ),
        (
            "general.sampling.mirostat_eta",
            &["mirostat_eta"],
            Kind::F32,
        ),
    ];
    let mut out = Vec::new();
    for (key, names, kind) in table {
        let Some(v) = names
            .iter()
            .find_map(|n| gen.get(*n))
            .filter(|v| !v.is_null())
        else {
            continue;
        };
        let value = match kind {
            Kind::Str => v.as_str().map(Value::str),
            Kind::I32 => v
                .as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .map(Value::I32),
            Kind::F32 => v.as_f64().map(|f| Value::F32(f as f32)),
        };
        if let Some(value) = value {
            out.push((key, value));
        }
    }
    out
}
