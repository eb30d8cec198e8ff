//! The GPT-2 BPE path (`_set_vocab_gpt2` + `get_vocab_base` + `get_vocab_base_pre`): tokens,
//! token types and `tokenizer.ggml.pre` from `tokenizer.json`, as transformers 4.57's
//! `AutoTokenizer` presents them to the reference converter.
//!
//! The tokenizer is HF's own `tokenizers` crate (0.22.2, the version the fixtures were made with),
//! loaded from `tokenizer.json`, then adjusted the way `PreTrainedTokenizerFast.__init__` adjusts
//! it (see [`HfTokenizer::load`]). `tokenizer.ggml.pre` is the name of
//! `sha256(str(tokenizer.encode(chktxt)))` in the reference's table ([`super::pre_hashes`]).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use fairy2i_format::gguf::{Value, ValueType};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::AddedToken;

use super::backend::{self, Backend};
use super::kv::{self, KvList};
use super::pre_hashes;
use super::special::{Sources, SpecialVocab, DEFAULT_TYPES};
use super::{looks_special, read_json_opt, Result, TokenizerError};

/// GGUF token types (`gguf.TokenType`).
pub mod token_type {
    /// A normal token.
    pub const NORMAL: i32 = 1;
    /// The unknown token.
    pub const UNKNOWN: i32 = 2;
    /// A control token.
    pub const CONTROL: i32 = 3;
    /// A user-defined token.
    pub const USER_DEFINED: i32 = 4;
    /// An unused slot.
    pub const UNUSED: i32 = 5;
    /// A byte token.
    pub const BYTE: i32 = 6;
}

/// The transformers tokenizer class, as far as it changes what the converter sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokClass {
    /// `GPT2TokenizerFast`: special tokens default to `<|endoftext|>`.
    Gpt2,
    /// `Qwen2TokenizerFast`: special strings become special, non-normalized AddedTokens.
    Qwen2,
    /// `LlamaTokenizerFast`: rewrites the post-processor from `add_bos_token`/`add_eos_token`.
    Llama,
    /// `PreTrainedTokenizerFast` and anything else.
    Generic,
}

impl TokClass {
    fn resolve(tc: Option<&Json>, config: &Json) -> TokClass {
        let name = tc
            .and_then(|t| t.get("tokenizer_class"))
            .and_then(Json::as_str)
            .map(|s| s.strip_suffix("Fast").unwrap_or(s).to_owned());
        match name.as_deref() {
            Some("GPT2Tokenizer") => TokClass::Gpt2,
            Some("Qwen2Tokenizer") => TokClass::Qwen2,
            Some("LlamaTokenizer") => TokClass::Llama,
            Some(_) => TokClass::Generic,
            // No tokenizer_class: AutoTokenizer maps config.json's model_type.
            None => match config.get("model_type").and_then(Json::as_str) {
                Some("llama") => TokClass::Llama,
                Some("qwen2" | "qwen3" | "qwen2_moe" | "qwen3_moe") => TokClass::Qwen2,
                Some("gpt2") => TokClass::Gpt2,
                _ => TokClass::Generic,
            },
        }
    }

    /// The constructor's defaults for special token attributes absent from tokenizer_config.
    fn default_special(self, key: &str) -> Option<&'static str> {
        match (self, key) {
            (TokClass::Gpt2, "unk_token" | "bos_token" | "eos_token") => Some("<|endoftext|>"),
            (TokClass::Qwen2, "unk_token" | "eos_token" | "pad_token") => Some("<|endoftext|>"),
            (TokClass::Llama, "unk_token") => Some("<unk>"),
            (TokClass::Llama, "bos_token") => Some("<s>"),
            (TokClass::Llama, "eos_token") => Some("</s>"),
            _ => None,
        }
    }
}

/// A special token attribute value: a plain string or an `AddedToken`.
#[derive(Debug, Clone, PartialEq)]
enum SpecialValue {
    Str(String),
    Token(AddedToken),
}

impl SpecialValue {
    fn content(&self) -> &str {
        match self {
            SpecialValue::Str(s) => s,
            SpecialValue::Token(t) => &t.content,
        }
    }
}

/// `AddedToken(**dict)` (unknown keys such as `__type` ignored).
fn added_token_from_json(v: &Json) -> Option<AddedToken> {
    let content = v.get("content")?.as_str()?;
    let flag = |k: &str| v.get(k).and_then(Json::as_bool);
    let special = flag("special").unwrap_or(false);
    Some(AddedToken {
        content: content.to_owned(),
        single_word: flag("single_word").unwrap_or(false),
        lstrip: flag("lstrip").unwrap_or(false),
        rstrip: flag("rstrip").unwrap_or(false),
        normalized: flag("normalized").unwrap_or(!special),
        special,
    })
}

/// The fast tokenizer as transformers' `AutoTokenizer.from_pretrained(dir)` builds it.
pub struct HfTokenizer {
    tokenizer: Backend,
    class: TokClass,
    /// Resolved special token attributes (bos_token … mask_token) by name.
    specials: BTreeMap<&'static str, SpecialValue>,
    add_bos_token: bool,
    add_eos_token: bool,
    clean_up_tokenization_spaces: bool,
    path: PathBuf,
}

const SPECIAL_KEYS: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

impl HfTokenizer {
    /// Loads `tokenizer.json` and applies what transformers 4.57 does on load:
    /// - every `added_tokens_decoder` entry of `tokenizer_config.json` (or, without it, of the
    ///   legacy `added_tokens.json` + `tokenizer.json`; `special_tokens_map.json` then overrides
    ///   the special token attributes) is added again, marked special when its text is one of the
    ///   special token attributes;
    /// - every special token attribute (`bos_token` … `mask_token`, `additional_special_tokens`,
    ///   class defaults included) not yet an added token is added as a special token;
    /// - a top-level pre-tokenizer with `add_prefix_space` takes tokenizer_config's value (default
    ///   false; `LlamaTokenizerFast` leaves it);
    /// - `LlamaTokenizerFast` replaces the post-processor with `[bos] $A [eos]` per
    ///   `add_bos_token` (default true) / `add_eos_token` (default false).
    pub fn load(src: &Sources<'_>) -> Result<HfTokenizer> {
        let path = src.dir.join("tokenizer.json");
        let tc_path = src.dir.join("tokenizer_config.json");
        let tj = src
            .tokenizer_json
            .ok_or_else(|| TokenizerError::Missing { path: path.clone() })?;
        let mut tokenizer = backend::build(&path, tj)?;
        let empty = serde_json::Map::new();
        let tc = src
            .tokenizer_config
            .and_then(Json::as_object)
            .unwrap_or(&empty);
        let class = TokClass::resolve(src.tokenizer_config, src.config);

        // added_tokens_decoder (id → AddedToken), as `_from_pretrained` assembles it.
        let mut decoder: BTreeMap<u64, AddedToken> = BTreeMap::new();
        let mut special_kwargs: BTreeMap<String, Json> = tc
            .iter()
            .filter(|(k, _)| {
                SPECIAL_KEYS.contains(&k.as_str()) || *k == "additional_special_tokens"
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(atd) = tc.get("added_tokens_decoder") {
            let bad = || TokenizerError::Field {
                path: tc_path.clone(),
                field: "added_tokens_decoder".into(),
                problem: "expected {\"<id>\": {\"content\": …}, …}",
            };
            for (id, entry) in atd.as_object().ok_or_else(bad)? {
                let id: u64 = id.trim().parse().map_err(|_| bad())?;
                decoder.insert(id, added_token_from_json(entry).ok_or_else(bad)?);
            }
        } else {
            // Legacy: special_tokens_map.json overrides, added_tokens.json, tokenizer.json.
            if let Some(Json::Object(stm)) =
                read_json_opt(&src.dir.join("special_tokens_map.json"))?
            {
                for (k, v) in stm {
                    let mut v = v.clone();
                    if let Json::Object(o) = &mut v {
                        o.insert("special".into(), Json::Bool(true));
                    }
                    if k == "additional_special_tokens" {
                        let mut list: Vec<Json> = match special_kwargs.get(&k) {
                            Some(Json::Array(a)) => a.clone(),
                            _ => Vec::new(),
                        };
                        for mut t in v.as_array().cloned().unwrap_or_default() {
                            if let Json::Object(o) = &mut t {
                                o.insert("special".into(), Json::Bool(true));
                            }
                            if !list.contains(&t) {
                                list.push(t);
                            }
                        }
                        v = Json::Array(list);
                    }
                    special_kwargs.insert(k.clone(), v);
                }
            }
            let special_strs: HashSet<String> = special_kwargs
                .iter()
                .flat_map(|(k, v)| {
                    let items: Vec<&Json> = if k == "additional_special_tokens" {
                        v.as_array().map(|a| a.iter().collect()).unwrap_or_default()
                    } else {
                        vec![v]
                    };
                    items
                        .into_iter()
                        .filter_map(|t| {
                            t.as_str()
                                .or_else(|| t.get("content").and_then(Json::as_str))
                        })
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect();
            if let Some(Json::Object(at)) = read_json_opt(&src.dir.join("added_tokens.json"))? {
                for (content, id) in at {
                    if let Some(id) = id.as_u64() {
                        let special = special_strs.contains(content.as_str());
                        decoder.insert(id, AddedToken::from(content.clone(), special));
                    }
                }
            }
            if let Some(list) = src
                .tokenizer_json
                .and_then(|t| t.get("added_tokens"))
                .and_then(Json::as_array)
            {
                for t in list {
                    if let (Some(id), Some(tok)) =
                        (t.get("id").and_then(Json::as_u64), added_token_from_json(t))
                    {
                        decoder.insert(id, tok);
                    }
                }
            }
        }
        // added_tokens_map: content → AddedToken (later ids win, as a dict built in order).
        let mut by_content: BTreeMap<String, AddedToken> = BTreeMap::new();
        for tok in decoder.values() {
            by_content.insert(tok.content.clone(), tok.clone());
        }

        // Special token attributes: tokenizer_config value (mapped through added_tokens_map),
        // else the class default.
        let mut specials: BTreeMap<&'static str, SpecialValue> = BTreeMap::new();
        for key in SPECIAL_KEYS {
            let value = match special_kwargs.get(key) {
                Some(Json::Null) => None,
                Some(Json::String(s)) => Some(match by_content.get(s) {
                    Some(t) => SpecialValue::Token(t.clone()),
                    None => SpecialValue::Str(s.clone()),
                }),
                Some(v @ Json::Object(_)) => added_token_from_json(v).map(SpecialValue::Token),
                Some(_) => None,
                None => class
                    .default_special(key)
                    .map(|s| SpecialValue::Str(s.to_owned())),
            };
            let value = match (class, value) {
                // Qwen2TokenizerFast wraps plain strings as special, non-normalized AddedTokens.
                (TokClass::Qwen2, Some(SpecialValue::Str(s)))
                    if matches!(key, "bos_token" | "eos_token" | "unk_token" | "pad_token") =>
                {
                    Some(SpecialValue::Token(AddedToken::from(s, true)))
                }
                (_, v) => v,
            };
            if let Some(v) = value {
                specials.insert(key, v);
            }
        }
        let mut extended: Vec<SpecialValue> = Vec::new();
        for key in SPECIAL_KEYS {
            if let Some(v) = specials.get(key) {
                if !extended.iter().any(|e| e.content() == v.content()) {
                    extended.push(v.clone());
                }
            }
        }
        if let Some(Json::Array(list)) = special_kwargs.get("additional_special_tokens") {
            for t in list {
                let v = match t {
                    Json::String(s) => SpecialValue::Str(s.clone()),
                    other => match added_token_from_json(other) {
                        Some(tok) => SpecialValue::Token(tok),
                        None => continue,
                    },
                };
                if !extended.iter().any(|e| e.content() == v.content()) {
                    extended.push(v);
                }
            }
        }
        let special_strs: HashSet<String> =
            extended.iter().map(|v| v.content().to_owned()).collect();

        // tokens_to_add: every decoder entry (transformers compares their reprs with the hashes
        // of the decoder's *keys*, so none is ever recognised as present), then the special
        // tokens not yet known.
        let existing: Vec<AddedToken> =
            tokenizer.get_added_tokens_decoder().into_values().collect();
        let mut to_add: Vec<AddedToken> = decoder.values().cloned().collect();
        let encoder: HashSet<String> = existing
            .iter()
            .map(|t| t.content.clone())
            .chain(to_add.iter().map(|t| t.content.clone()))
            .collect();
        for v in &extended {
            match v {
                SpecialValue::Str(s) => {
                    if !encoder.contains(s) {
                        to_add.push(AddedToken::from(s.clone(), true));
                    }
                }
                // An AddedToken never equals a string, so it is always (re-)added.
                SpecialValue::Token(t) => {
                    if !to_add.contains(t) {
                        to_add.push(t.clone());
                    }
                }
            }
        }
        for t in &mut to_add {
            t.special = t.special || special_strs.contains(&t.content);
        }
        if !to_add.is_empty() {
            tokenizer.add_tokens(&to_add);
        }

        // add_prefix_space on a top-level pre-tokenizer that has the field (ByteLevel).
        let add_prefix_space = match tc.get("add_prefix_space") {
            Some(v) => v.as_bool(),
            None if class == TokClass::Llama => None,
            None => Some(false),
        };
        if let (Some(want), Some(PreTokenizerWrapper::ByteLevel(bl))) =
            (add_prefix_space, tokenizer.get_pre_tokenizer())
        {
            if bl.add_prefix_space != want {
                let mut bl = *bl;
                bl.add_prefix_space = want;
                tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(bl)));
            }
        }

        let flag = |k: &str, default: bool| tc.get(k).map_or(default, super::py_truthy);
        Ok(HfTokenizer {
            tokenizer,
            class,
            specials,
            add_bos_token: flag("add_bos_token", true),
            add_eos_token: flag("add_eos_token", false),
            clean_up_tokenization_spaces: flag("clean_up_tokenization_spaces", false),
            path,
        })
    }

    fn lib_err(&self, e: tokenizers::Error) -> TokenizerError {
        TokenizerError::Tokenizers {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// `tokenizer.encode(text)` (special tokens added).
    pub fn encode_with_specials(&self, text: &str) -> Result<Vec<u32>> {
        if self.class != TokClass::Llama {
            let enc = self
                .tokenizer
                .encode(text, true)
                .map_err(|e| self.lib_err(e))?;
            return Ok(enc.get_ids().to_vec());
        }
        // LlamaTokenizerFast.update_post_processor: "[bos:0] $A:0 [eos:0]".
        let id_of = |key: &str, field: &str| -> Result<u32> {
            self.specials
                .get(key)
                .and_then(|v| self.tokenizer.token_to_id(v.content()))
                .ok_or_else(|| TokenizerError::Field {
                    path: self.path.with_file_name("tokenizer_config.json"),
                    field: field.into(),
                    problem: "is true but the token is not set or not in the vocabulary",
                })
        };
        let mut ids = Vec::new();
        if self.add_bos_token {
            ids.push(id_of("bos_token", "add_bos_token")?);
        }
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| self.lib_err(e))?;
        ids.extend_from_slice(enc.get_ids());
        if self.add_eos_token {
            ids.push(id_of("eos_token", "add_eos_token")?);
        }
        Ok(ids)
    }

    /// `tokenizer.decode(tokenizer.encode(token, add_special_tokens=False))`.
    fn roundtrip(&self, token: &str) -> Result<String> {
        let enc = self
            .tokenizer
            .encode(token, false)
            .map_err(|e| self.lib_err(e))?;
        let text = self
            .tokenizer
            .decode(enc.get_ids(), false)
            .map_err(|e| self.lib_err(e))?;
        Ok(if self.clean_up_tokenization_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }
}

/// `PreTrainedTokenizerBase.clean_up_tokenization`.
fn clean_up_tokenization(s: &str) -> String {
    s.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

/// sha256 of Python's `str(list_of_ids)`: `[1, 2, 3]`.
pub fn chkhsh(ids: &[u32]) -> String {
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    let text = format!("[{}]", list.join(", "));
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Tokens, token types and the pre-tokenizer name (`get_vocab_base`).
pub struct BpeVocab {
    /// Token strings for ids `0 … vocab_size-1`.
    pub tokens: Vec<String>,
    /// Token types.
    pub types: Vec<i32>,
    /// `tokenizer.ggml.pre`.
    pub pre: &'static str,
}

/// `get_vocab_base`: `hparam_vocab` is `config.json`'s `vocab_size` (or the class default).
pub fn vocab_base(src: &Sources<'_>, hparam_vocab: u64) -> Result<BpeVocab> {
    let hf = HfTokenizer::load(src)?;
    let path = hf.path.clone();
    let vocab = hf.tokenizer.get_vocab(true);
    let max_id = vocab.values().copied().max().map_or(0, u64::from);
    if !vocab.is_empty() && max_id >= hparam_vocab {
        return Err(TokenizerError::VocabTooLarge {
            path,
            max_id,
            vocab_size: hparam_vocab,
        });
    }

    let ids = hf.encode_with_specials(pre_hashes::CHKTXT)?;
    let hash = chkhsh(&ids);
    let pre = pre_hashes::lookup(&hash).ok_or_else(|| TokenizerError::UnknownPreTokenizer {
        path: path.clone(),
        chkhsh: hash.clone(),
    })?;

    let added = hf.tokenizer.get_added_tokens_decoder();
    let added_contents: HashSet<&str> = added.values().map(|t| t.content.as_str()).collect();
    let n = usize::try_from(hparam_vocab).map_err(|_| TokenizerError::VocabTooLarge {
        path: path.clone(),
        max_id,
        vocab_size: hparam_vocab,
    })?;
    // reverse_vocab; where an added token and a model token share an id, the added one is kept.
    let mut reverse: Vec<Option<&str>> = vec![None; n];
    for (tok, &id) in &vocab {
        if let Some(slot) = reverse.get_mut(id as usize) {
            let keep_old = slot.is_some_and(|old| added_contents.contains(old));
            if !keep_old {
                *slot = Some(tok.as_str());
            }
        }
    }
    let mut tokens = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    for (i, slot) in reverse.iter().enumerate() {
        let Some(token) = slot else {
            tokens.push(format!("[PAD{i}]"));
            types.push(token_type::UNUSED);
            continue;
        };
        if !added_contents.contains(token) {
            tokens.push((*token).to_owned());
            types.push(token_type::NORMAL);
            continue;
        }
        let info = u32::try_from(i).ok().and_then(|id| added.get(&id));
        let mut token = (*token).to_owned();
        if info.is_some_and(|t| !t.normalized) {
            token = hf.roundtrip(&token)?;
        }
        if info.is_some_and(|t| t.special) || looks_special(&token) {
            types.push(token_type::CONTROL);
        } else {
            token = token.replace('\u{2581}', " ");
            types.push(token_type::USER_DEFINED);
        }
        tokens.push(token);
    }
    Ok(BpeVocab { tokens, types, pre })
}

/// `_set_vocab_gpt2`: model, pre, tokens, token types, then SpecialVocab with merges.
pub fn set_vocab(src: &Sources<'_>, kvs: &mut KvList, hparam_vocab: u64) -> Result<()> {
    let v = vocab_base(src, hparam_vocab)?;
    kvs.set_str(kv::MODEL, "gpt2");
    kvs.set_str(kv::PRE, v.pre);
    kvs.set_array(kv::TOKENS, Value::str_array(&v.tokens));
    kvs.set_array(
        kv::TOKEN_TYPE,
        Value::array(
            ValueType::I32,
            v.types.iter().map(|&t| Value::I32(t)).collect(),
        ),
    );
    let sv = SpecialVocab::load(src, true, &DEFAULT_TYPES, None)?;
    sv.add_to(kvs, &src.dir.join("tokenizer_config.json"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chkhsh_formats_like_python_str_of_list() {
        // hashlib.sha256(str(ids).encode()).hexdigest() in Python.
        assert_eq!(
            chkhsh(&[]),
            "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
        );
        assert_eq!(
            chkhsh(&[1, 2]),
            "3a316d6d3226f84c1e46e4447fa8d5fd800bff4a1bc6498152523cd4a602b69b"
        );
        assert_eq!(
            chkhsh(&[128000, 198]),
            "6ffa2674f2ca8cee47d6710bf8a3668f93e637fb00fb9246651a84af6972d0bb"
        );
    }

    #[test]
    fn clean_up_matches_transformers() {
        assert_eq!(clean_up_tokenization("a . b ,c n't"), "a. b,cn't");
    }
}
