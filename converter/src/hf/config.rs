//! `config.json` as transformers' `AutoConfig(...).to_dict()` sees it: the file's keys, plus the
//! defaults the config class fills in for the keys that reach the GGUF (llama.cpp's converter reads
//! hyper-parameters from that dict, so e.g. a Llama config without `head_dim` still gets
//! `key_length`). Also `generation_config.json` (sampling keys).

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
            _ => {
                return Err(Error::ConfigField {
                    path,
                    field: "architectures".into(),
                    problem: "is missing".into(),
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
        let model_type = params
            .get("model_type")
            .and_then(Json::as_str)
            .unwrap_or(arch.default_model_type())
            .to_string();
        fill_defaults(&mut params, &model_type, arch);
        let cfg = HfConfig { path, params, arch };
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

    /// The first of `keys` present (and not null), as llama.cpp's `find_hparam`.
    pub fn find(&self, keys: &[&str]) -> Option<(&str, &Json)> {
        keys.iter()
            .find_map(|k| self.params.get_key_value(*k))
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.as_str(), v))
    }

    /// A required non-negative integer field.
    pub fn u64(&self, field: &str) -> Result<u64> {
        match self.params.get(field) {
            None | Some(Json::Null) => Err(self.field_error(field, "is missing")),
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

    /// Whether the output projection is tied to the token embeddings.
    pub fn tied_embeddings(&self) -> bool {
        self.params
            .get("tie_word_embeddings")
            .and_then(Json::as_bool)
            .unwrap_or(false)
    }
}

/// Fills in the defaults of transformers 4.57's config classes for the keys the GGUF reads.
fn fill_defaults(params: &mut Map<String, Json>, model_type: &str, arch: Arch) {
    let set = |p: &mut Map<String, Json>, k: &str, v: Json| {
        if p.get(k).is_none_or(Json::is_null) {
            p.insert(k.to_string(), v);
        }
    };
    // (vocab, hidden, intermediate, layers, heads, max_position_embeddings)
    let (vocab, hidden, inter, layers, heads, ctx) = match model_type {
        "mistral" => (32000, 4096, 14336, 32, 32, 4096 * 32),
        "qwen2" | "qwen3" => (151936, 4096, 22016, 32, 32, 32768),
        _ => (32000, 4096, 11008, 32, 32, 2048),
    };
    set(params, "vocab_size", vocab.into());
    set(params, "hidden_size", hidden.into());
    set(params, "intermediate_size", inter.into());
    set(params, "num_hidden_layers", layers.into());
    set(params, "num_attention_heads", heads.into());
    set(params, "max_position_embeddings", ctx.into());
    if !params.contains_key("rms_norm_eps") {
        params.insert("rms_norm_eps".into(), 1e-6.into());
    }
    if !params.contains_key("rope_theta") {
        params.insert("rope_theta".into(), 10000.0.into());
    }
    let n_head = params
        .get("num_attention_heads")
        .cloned()
        .unwrap_or(Json::Null);
    if model_type == "mistral" {
        set(params, "num_key_value_heads", 8.into());
    } else {
        set(params, "num_key_value_heads", n_head.clone());
    }
    match model_type {
        // LlamaConfig / MistralConfig: head_dim = hidden_size // num_attention_heads when unset.
        "llama" | "mistral" if params.get("head_dim").is_none_or(Json::is_null) => {
            let hd = match (
                params.get("hidden_size").and_then(Json::as_u64),
                n_head.as_u64(),
            ) {
                (Some(h), Some(n)) if n > 0 => Json::from(h / n),
                _ => Json::Null,
            };
            params.insert("head_dim".into(), hd);
        }
        "qwen3" => set(params, "head_dim", 128.into()),
        _ => {}
    }
    let _ = arch;
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
