//! Builds the `tokenizers` backend from an already parsed `tokenizer.json`, the way the crate's
//! own deserializer does (`TokenizerImpl` and `BPE` visitors of tokenizers 0.22.2), without its
//! generic path, which buffers the whole model several times (≈ 0.5 s for Qwen's 151k vocab).
//!
//! Truncation and padding are not applied: transformers switches both off for `encode`.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BpeBuilder, Vocab};
use tokenizers::models::ModelWrapper;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, TokenizerBuilder, TokenizerImpl};

use super::json::{MergeEntry, MergesField, ModelJson, TokenizerJson, VocabField};
use super::{Result, TokenizerError};

/// The fast tokenizer (what `tokenizers.Tokenizer` wraps).
pub type Backend = TokenizerImpl<
    ModelWrapper,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

fn lib_err(path: &Path, message: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Tokenizers {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// `tj[key]` deserialized; absent or `null` → `None`.
fn part<T: DeserializeOwned>(path: &Path, tj: &Json, key: &str) -> Result<Option<T>> {
    match tj.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| lib_err(path, format_args!("`{key}`: {e}"))),
    }
}

fn opt<T: DeserializeOwned>(path: &Path, model: &Json, key: &str) -> Result<Option<T>> {
    part(path, model, key)
        .map_err(|_| lib_err(path, format_args!("`model.{key}`: unexpected value")))
}

/// The BPE model from `model` (`type` = `BPE`), replaying the crate's `BPE` visitor.
fn bpe(
    path: &Path,
    model: &ModelJson,
    vocab: &Vocab,
    merges: &[MergeEntry],
) -> Result<ModelWrapper> {
    let fields = Json::Object(model.fields.clone());
    let mut builder = BpeBuilder::new();
    if let Some(p) = opt::<f32>(path, &fields, "dropout")? {
        builder = builder.dropout(p);
    }
    if let Some(s) = opt::<String>(path, &fields, "unk_token")? {
        builder = builder.unk_token(s);
    }
    if let Some(s) = opt::<String>(path, &fields, "continuing_subword_prefix")? {
        builder = builder.continuing_subword_prefix(s);
    }
    if let Some(s) = opt::<String>(path, &fields, "end_of_word_suffix")? {
        builder = builder.end_of_word_suffix(s);
    }
    if let Some(b) = opt::<bool>(path, &fields, "fuse_unk")? {
        builder = builder.fuse_unk(b);
    }
    if let Some(b) = opt::<bool>(path, &fields, "byte_fallback")? {
        builder = builder.byte_fallback(b);
    }
    if let Some(b) = opt::<bool>(path, &fields, "ignore_merges")? {
        builder = builder.ignore_merges(b);
    }
    let bad_merges = || {
        lib_err(
            path,
            "`model.merges`: expected [\"a b\", …] or [[\"a\", \"b\"], …]",
        )
    };
    // The crate tries [a, b] pairs first, then "a b" strings (lines starting "#version" skipped).
    let pairs: Option<Vec<(String, String)>> = merges
        .iter()
        .map(|m| match m {
            MergeEntry::List(l) => match l.as_slice() {
                [a, b] => Some((a.clone(), b.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let merges = match pairs {
        Some(p) => p,
        None => {
            let mut out = Vec::with_capacity(merges.len());
            for m in merges {
                let MergeEntry::Str(line) = m else {
                    return Err(bad_merges());
                };
                if line.starts_with("#version") {
                    continue;
                }
                let mut parts = line.split(' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(a), Some(b), None) => out.push((a.to_owned(), b.to_owned())),
                    _ => {
                        return Err(lib_err(
                            path,
                            format_args!("Merges text file invalid at line {}", out.len() + 1),
                        ))
                    }
                }
            }
            out
        }
    };
    let bpe = builder
        .vocab_and_merges(vocab.clone(), merges)
        .build()
        .map_err(|e| lib_err(path, e))?;
    Ok(ModelWrapper::BPE(bpe))
}

/// The backend for `tokenizer.json` at `path`, parsed as `tj`.
pub fn build(path: &Path, tj: &TokenizerJson) -> Result<Backend> {
    let top = Json::Object(tj.fields.clone());
    match tj.get("version") {
        None => {}
        Some(Json::String(v)) if v == "1.0" => {}
        Some(v) => {
            return Err(lib_err(
                path,
                format_args!("Unknown tokenizer version '{v}'"),
            ))
        }
    }
    let model = match (&tj.model, &tj.model_other) {
        (Some(m), _) => match (m.get("type").and_then(Json::as_str), &m.vocab, &m.merges) {
            (Some("BPE"), Some(VocabField::Map(v)), Some(MergesField::List(l))) => {
                bpe(path, m, v, l)?
            }
            _ => serde_json::from_value::<ModelWrapper>(m.to_json())
                .map_err(|e| lib_err(path, format_args!("`model`: {e}")))?,
        },
        (None, Some(other)) => serde_json::from_value::<ModelWrapper>(other.clone())
            .map_err(|e| lib_err(path, format_args!("`model`: {e}")))?,
        (None, None) => return Err(lib_err(path, "Model missing.")),
    };
    let mut backend: Backend = TokenizerBuilder::new()
        .with_model(model)
        .with_normalizer(part(path, &top, "normalizer")?)
        .with_pre_tokenizer(part(path, &top, "pre_tokenizer")?)
        .with_post_processor(part(path, &top, "post_processor")?)
        .with_decoder(part(path, &top, "decoder")?)
        .build()
        .map_err(|e| lib_err(path, e))?;
    let added: Vec<AddedToken> = part(path, &top, "added_tokens")?.unwrap_or_default();
    backend.add_tokens(&added);
    Ok(backend)
}
