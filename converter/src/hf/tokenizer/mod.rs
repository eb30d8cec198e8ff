//! Tokenizer files of a Hugging Face model folder → the `tokenizer.*` GGUF key/values that
//! llama.cpp b11434's `convert_hf_to_gguf.py` writes (fixtures README, "Tokenizer" and
//! "SentencePiece path" sections).
//!
//! API: [`tokenizer_kvs`] returns every `tokenizer.*` KV in the reference's order; the caller
//! appends them after `general.quantization_version`. [`TokenizerError`] names the file and the
//! problem.
//!
//! Paths, as the reference's `set_vocab` picks them:
//! - `llama`: `tokenizer.ggml.add_space_prefix` first when `tokenizer_config.json` has a non-null
//!   `add_prefix_space`; then SentencePiece when `tokenizer.model` exists (even beside a
//!   `tokenizer.json`), else the GPT-2 BPE path from `tokenizer.json` (a Llama-2-style byte-fallback
//!   `tokenizer.json` without `tokenizer.model` is rejected: the reference converts it through
//!   transformers' slow/fast bridge, which is not reproduced). Then `vocab_size` 32016 (CodeLlama)
//!   adds the infill ids and `vocab_size` 49152 forces `add_bos_token` false.
//! - `qwen2`, `qwen3`: SentencePiece when `tokenizer.model` exists, else GPT-2 BPE.
//!
//! Also rejected (the reference handles them by other means): a Mistral `tekken.json` without
//! `tokenizer.json`, `tokenizer_class` HybridDNATokenizer, and architectures other than llama,
//! qwen2 and qwen3.
//!
//! Modules: [`kv`] (keys, ordered KV list), [`special`] (gguf-py's `SpecialVocab`), [`gpt2`]
//! (BPE vocab as transformers' `AutoTokenizer` presents it, `tokenizer.ggml.pre` by chkhsh),
//! [`spm`] (SentencePiece `tokenizer.model`), [`json`] (one-pass `tokenizer.json` reader),
//! `backend` (the `tokenizers` crate's tokenizer built from it), `pre_hashes` (the reference's
//! chkhsh table).

mod backend;
pub mod gpt2;
pub mod json;
pub mod kv;
mod pre_hashes;
pub mod special;
pub mod spm;

use std::path::{Path, PathBuf};

use fairy2i_format::gguf::Value;
use serde_json::Value as Json;

use kv::KvList;
use special::{Sources, SpecialVocab};

/// What the tokenizer conversion needs from the caller.
pub struct TokenizerInput<'a> {
    /// The Hugging Face model folder.
    pub dir: &'a Path,
    /// The parsed `config.json`.
    pub config: &'a serde_json::Value,
    /// GGUF architecture: `llama`, `qwen2` or `qwen3`.
    pub arch: &'a str,
}

/// A tokenizer file that cannot be converted.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required file is absent.
    #[error("{}: missing", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// Neither `tokenizer.model` nor `tokenizer.json` is there.
    #[error("{}: no tokenizer.model or tokenizer.json", dir.display())]
    NoTokenizer {
        /// The model folder.
        dir: PathBuf,
    },
    /// Reading a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid UTF-8 text.
    #[error("{}: not valid UTF-8", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// A JSON file does not parse.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A field has an unusable value.
    #[error("{}: `{field}`: {problem}", path.display())]
    Field {
        /// The file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The `tokenizers` library rejected `tokenizer.json` or failed to encode with it.
    #[error("{}: {message}", path.display())]
    Tokenizers {
        /// The file.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
    /// llama.cpp b11434 does not know the BPE pre-tokenizer.
    #[error(
        "{}: unknown pre-tokenizer (chkhsh {chkhsh}): llama.cpp b11434's convert_hf_to_gguf.py \
         has no entry for this BPE pre-tokenizer",
        path.display()
    )]
    UnknownPreTokenizer {
        /// `tokenizer.json`.
        path: PathBuf,
        /// sha256 of the check text's token ids.
        chkhsh: String,
    },
    /// A token id is not below the vocabulary size from `config.json`.
    #[error("{}: token id {max_id} is not below vocab_size {vocab_size}", path.display())]
    VocabTooLarge {
        /// The tokenizer file.
        path: PathBuf,
        /// The largest token id.
        max_id: u64,
        /// `vocab_size`.
        vocab_size: u64,
    },
    /// A special token id is negative or does not fit u32.
    #[error("{}: invalid value for special token type {typ}: {id}", path.display())]
    BadSpecialId {
        /// The file holding the id.
        path: PathBuf,
        /// `bos`, `eos`, …
        typ: String,
        /// The id.
        id: i128,
    },
    /// `tokenizer.model` is not a well-formed SentencePiece model.
    #[error("{}: bad SentencePiece model at byte {offset}: {problem}", path.display())]
    Protobuf {
        /// `tokenizer.model`.
        path: PathBuf,
        /// Byte offset of the problem.
        offset: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// A SentencePiece piece that `SentencePieceProcessor` would refuse.
    #[error("{}: bad SentencePiece model: piece {id}: {problem}", path.display())]
    BadPiece {
        /// `tokenizer.model`.
        path: PathBuf,
        /// Piece id.
        id: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// A tokenizer layout that the reference converts by means this module does not reproduce.
    #[error("{}: {what} is not supported", path.display())]
    Unsupported {
        /// The file that selects the layout.
        path: PathBuf,
        /// The layout.
        what: &'static str,
    },
    /// The architecture is not one this converter handles.
    #[error(
        "unsupported architecture `{arch}` for the tokenizer (expected llama, qwen2 or qwen3)"
    )]
    UnknownArch {
        /// The architecture.
        arch: String,
    },
}

/// Result with [`TokenizerError`].
pub type Result<T> = std::result::Result<T, TokenizerError>;

/// All `tokenizer.*` KVs in the order the reference converter writes them.
pub fn tokenizer_kvs(input: &TokenizerInput<'_>) -> Result<Vec<(String, Value)>> {
    let dir = input.dir;
    let arch_default = match input.arch {
        "llama" => 32000,
        "qwen2" | "qwen3" => 151_936,
        other => {
            return Err(TokenizerError::UnknownArch {
                arch: other.to_owned(),
            })
        }
    };
    // The config class (hence its vocab_size default) follows config.json's model_type.
    let default_vocab = match input.config.get("model_type").and_then(Json::as_str) {
        Some("llama") => 32000,
        Some("qwen2" | "qwen3" | "qwen2_moe" | "qwen3_moe") => 151_936,
        _ => arch_default,
    };
    let config_path = dir.join("config.json");
    // `AutoConfig(...).to_dict()` always has vocab_size (the class default when config.json lacks it).
    let hparam_vocab = match input.config.get("vocab_size") {
        None | Some(Json::Null) => default_vocab,
        Some(v) => v.as_u64().ok_or_else(|| TokenizerError::Field {
            path: config_path.clone(),
            field: "vocab_size".into(),
            problem: "expected a non-negative integer",
        })?,
    };

    let tc_path = dir.join("tokenizer_config.json");
    let tokenizer_config = read_json_opt(&tc_path)?;
    let tj_path = dir.join("tokenizer.json");
    let spm_path = dir.join("tokenizer.model");
    let mut kvs = KvList::default();

    if input.arch == "llama" {
        if dir.join("tekken.json").is_file() && !tj_path.is_file() {
            return Err(TokenizerError::Unsupported {
                path: dir.join("tekken.json"),
                what: "a Mistral tekken.json tokenizer",
            });
        }
        if let Some(tc) = &tokenizer_config {
            match tc.get("add_prefix_space") {
                None | Some(Json::Null) => {}
                Some(Json::Bool(b)) => kvs.set(kv::ADD_SPACE_PREFIX, Value::Bool(*b)),
                Some(_) => {
                    return Err(TokenizerError::Field {
                        path: tc_path.clone(),
                        field: "add_prefix_space".into(),
                        problem: "expected true, false or null",
                    })
                }
            }
            if tc.get("tokenizer_class").and_then(Json::as_str) == Some("HybridDNATokenizer") {
                return Err(TokenizerError::Unsupported {
                    path: tc_path,
                    what: "tokenizer_class HybridDNATokenizer",
                });
            }
        }
    }

    let tokenizer_json_value = match read_text_opt(&tj_path)? {
        Some(text) => Some(json::parse(&text).map_err(|source| TokenizerError::Json {
            path: tj_path.clone(),
            source,
        })?),
        None => None,
    };
    let sources = Sources {
        dir,
        tokenizer_json: tokenizer_json_value.as_ref(),
        tokenizer_config: tokenizer_config.as_ref(),
        config: input.config,
    };

    if spm_path.is_file() {
        spm::set_vocab(&sources, &mut kvs, hparam_vocab)?;
    } else {
        let Some(tj) = &tokenizer_json_value else {
            return Err(TokenizerError::NoTokenizer {
                dir: dir.to_path_buf(),
            });
        };
        if input.arch == "llama" && is_llama_hf_vocab(&tj_path, tj)? {
            return Err(TokenizerError::Unsupported {
                path: tj_path,
                what: "a Llama-2-style (byte-fallback BPE) tokenizer.json without tokenizer.model",
            });
        }
        gpt2::set_vocab(&sources, &mut kvs, hparam_vocab)?;
    }

    if input.arch == "llama" {
        if hparam_vocab == 32016 {
            // CodeLlama: the infill ids (only `eot` has a GGUF handler in the reference).
            let mut sv = SpecialVocab::load(
                &sources,
                false,
                &["prefix", "suffix", "middle", "eot"],
                None,
            )?;
            sv.set_id("prefix", 32007);
            sv.set_id("suffix", 32008);
            sv.set_id("middle", 32009);
            sv.set_id("eot", 32010);
            sv.add_to(&mut kvs, &tc_path)?;
        }
        if hparam_vocab == 49152 {
            kvs.set(kv::ADD_BOS, Value::Bool(false));
        }
    }
    Ok(kvs.into_vec())
}

/// `LlamaHfVocab`'s pre-check: true when the reference would convert this `tokenizer.json` as a
/// Llama-2-style SentencePiece BPE (byte fallback, `Sequence` decoder) rather than GPT-2 BPE.
fn is_llama_hf_vocab(path: &Path, tj: &json::TokenizerJson) -> Result<bool> {
    let model = tj.model.as_ref().ok_or_else(|| TokenizerError::Field {
        path: path.to_path_buf(),
        field: "model".into(),
        problem: "missing or not an object",
    })?;
    let is_bpe = model.get("type").and_then(Json::as_str) == Some("BPE");
    let flag = |k: &str, default: bool| model.get(k).map_or(default, py_truthy);
    if is_bpe && flag("ignore_merges", false) && !flag("byte_fallback", true) {
        return Ok(false); // Llama 3: BpeVocab
    }
    if !is_bpe || !flag("byte_fallback", false) {
        return Ok(false);
    }
    // `tokenizer_json['decoder']['type']`: a null decoder raises TypeError, which the reference
    // also answers with the GPT-2 path.
    Ok(tj
        .get("decoder")
        .and_then(|d| d.get("type"))
        .and_then(Json::as_str)
        == Some("Sequence"))
}

/// Python truthiness of a JSON value.
pub(crate) fn py_truthy(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
    }
}

pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            TokenizerError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            TokenizerError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Reads a UTF-8 text file; a missing file is [`TokenizerError::Missing`].
pub(crate) fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_bytes(path)?).map_err(|_| TokenizerError::NotUtf8 {
        path: path.to_path_buf(),
    })
}

/// Reads a UTF-8 text file if it is a file.
pub(crate) fn read_text_opt(path: &Path) -> Result<Option<String>> {
    if path.is_file() {
        read_text(path).map(Some)
    } else {
        Ok(None)
    }
}

fn parse_json(path: &Path, text: &str) -> Result<Json> {
    serde_json::from_str(text).map_err(|source| TokenizerError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and parses a JSON file if it is a file.
pub(crate) fn read_json_opt(path: &Path) -> Result<Option<Json>> {
    match read_text_opt(path)? {
        Some(text) => parse_json(path, &text).map(Some),
        None => Ok(None),
    }
}

/// `ModelBase.does_token_look_special`.
pub(crate) fn looks_special(token: &str) -> bool {
    matches!(token, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (token.starts_with("<|") && token.ends_with("|>"))
        || (token.starts_with("<｜") && token.ends_with("｜>"))
        || (token.starts_with("<unused") && token.ends_with('>'))
}
