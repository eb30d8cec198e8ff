//! The tokenizer GGUF keys and an ordered key/value list with gguf-py's writer semantics.

use fairy2i_format::gguf::Value;

/// `tokenizer.ggml.model` (`gpt2`, `llama`).
pub const MODEL: &str = "tokenizer.ggml.model";
/// `tokenizer.ggml.pre` (pre-tokenizer name).
pub const PRE: &str = "tokenizer.ggml.pre";
/// `tokenizer.ggml.tokens` (string array).
pub const TOKENS: &str = "tokenizer.ggml.tokens";
/// `tokenizer.ggml.token_type` (i32 array).
pub const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
/// `tokenizer.ggml.scores` (f32 array).
pub const SCORES: &str = "tokenizer.ggml.scores";
/// `tokenizer.ggml.merges` (string array).
pub const MERGES: &str = "tokenizer.ggml.merges";
/// `tokenizer.ggml.add_bos_token`.
pub const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
/// `tokenizer.ggml.add_eos_token`.
pub const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
/// `tokenizer.ggml.add_sep_token`.
pub const ADD_SEP: &str = "tokenizer.ggml.add_sep_token";
/// `tokenizer.ggml.add_space_prefix`.
pub const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
/// `tokenizer.chat_template`.
pub const CHAT_TEMPLATE: &str = "tokenizer.chat_template";
/// `tokenizer.chat_templates` (names of the named templates).
pub const CHAT_TEMPLATES: &str = "tokenizer.chat_templates";
/// `tokenizer.ggml.normalizer.lowercase`.
pub const NORMALIZER_LOWERCASE: &str = "tokenizer.ggml.normalizer.lowercase";
/// `tokenizer.ggml.normalizer.strip_accents`.
pub const NORMALIZER_STRIP_ACCENTS: &str = "tokenizer.ggml.normalizer.strip_accents";

/// The id key for a special token type, as gguf-py's `add_{typ}_token_id` handlers name them.
/// Types without a handler (`cls`, `prefix`, `suffix`, `middle`, …) are skipped by the reference.
pub fn special_id_key(typ: &str) -> Option<&'static str> {
    Some(match typ {
        "bos" => "tokenizer.ggml.bos_token_id",
        "eos" => "tokenizer.ggml.eos_token_id",
        "unk" => "tokenizer.ggml.unknown_token_id",
        // The reference spells it this way.
        "sep" => "tokenizer.ggml.seperator_token_id",
        "pad" => "tokenizer.ggml.padding_token_id",
        "mask" => "tokenizer.ggml.mask_token_id",
        "eot" => "tokenizer.ggml.eot_token_id",
        "eom" => "tokenizer.ggml.eom_token_id",
        _ => return None,
    })
}

/// The flag key for `add_{typ}_token` (only bos, eos and sep have a handler in the reference).
pub fn add_special_key(typ: &str) -> Option<&'static str> {
    Some(match typ {
        "bos" => ADD_BOS,
        "eos" => ADD_EOS,
        "sep" => ADD_SEP,
        _ => return None,
    })
}

/// Key/value pairs in insertion order. Setting an existing key replaces its value in place, as
/// gguf-py's `GGUFWriter.add_key_value` does (a dict keeps a key's first position).
#[derive(Debug, Default)]
pub struct KvList {
    entries: Vec<(String, Value)>,
}

impl KvList {
    /// Sets `key`, keeping the position of an earlier write.
    pub fn set(&mut self, key: &str, value: Value) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.entries.push((key.to_owned(), value)),
        }
    }

    /// `add_string`: an empty string is not written.
    pub fn set_str(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.set(key, Value::str(value));
        }
    }

    /// `add_array`: an empty array is not written.
    pub fn set_array(&mut self, key: &str, value: Value) {
        let empty = matches!(&value, Value::Array(a) if a.items.is_empty());
        if !empty {
            self.set(key, value);
        }
    }

    /// The entries, in order.
    pub fn into_vec(self) -> Vec<(String, Value)> {
        self.entries
    }
}
