//! gguf-py's `SpecialVocab`: merges, special token ids, `add_*_token` flags, chat template and
//! normalizer flags, read from `tokenizer.json`, `tokenizer_config.json`, `chat_template.*`,
//! `config.json` and `merges.txt` with the reference's precedence rules.
//!
//! Facts (gguf-py 0.19.0 in llama.cpp b11434, `gguf/vocab.py`):
//! - ids: for each type in order, the `tokenizer_config.json` `<typ>_token` string (or `content` of
//!   a dict) is looked up in `tokenizer.json` `added_tokens` only; then `config.json`
//!   `<typ>_token_id` (or `text_config.<typ>_token_id`) fills the types still unset. The first
//!   value set for a type wins; ids ≥ `n_vocab` (when given) are skipped.
//! - `add_bos/eos/sep`: the post-processor decides first (ByteLevel: bos and eos false unless set;
//!   RobertaProcessing: all true; TemplateProcessing: crude parse of `single`/`pair`), then
//!   `tokenizer_config.json` `add_<typ>_token` fills the types still unset.
//! - chat template: `tokenizer_config.json` `chat_template` (even `null`) over `chat_template.jinja`
//!   (with `additional_chat_templates/*.jinja`) over `chat_template.json`.

use std::path::Path;

use fairy2i_format::gguf::{Value, ValueType};
use serde_json::{Map, Value as Json};

use super::json::{MergeEntry, MergesField, TokenizerJson};
use super::kv::{self, KvList};
use super::{py_truthy, read_json_opt, read_text_opt, Result, TokenizerError};

/// The default special token types, in the reference's order.
pub const DEFAULT_TYPES: [&str; 7] = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"];

/// A chat template as `add_chat_template` takes it.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatTemplate {
    /// One template.
    Single(String),
    /// `[{name, template}, …]`; `default` becomes `tokenizer.chat_template`.
    Named(Vec<(String, String)>),
}

/// What `SpecialVocab.add_to_gguf` writes.
#[derive(Debug, Default)]
pub struct SpecialVocab {
    /// Merges as `"a b"` strings.
    pub merges: Vec<String>,
    /// Special token ids in insertion order.
    pub ids: Vec<(String, u64)>,
    /// `add_<typ>_token` flags in insertion order.
    pub add: Vec<(String, bool)>,
    /// The chat template.
    pub chat_template: Option<ChatTemplate>,
    /// Normalizer lowercases.
    pub normalizer_lowercase: Option<bool>,
    /// Normalizer strips accents.
    pub normalizer_strip_accents: Option<bool>,
    types: Vec<String>,
    n_vocab: Option<u64>,
    load_merges: bool,
}

/// The parsed inputs SpecialVocab reads (each file once per conversion).
pub struct Sources<'a> {
    /// Model folder.
    pub dir: &'a Path,
    /// `tokenizer.json`, when the file exists.
    pub tokenizer_json: Option<&'a TokenizerJson>,
    /// `tokenizer_config.json`, when the file exists.
    pub tokenizer_config: Option<&'a Json>,
    /// `config.json`.
    pub config: &'a Json,
}

fn set_ordered<T>(list: &mut Vec<(String, T)>, key: &str, value: T) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => list.push((key.to_owned(), value)),
    }
}

fn setdefault<T>(list: &mut Vec<(String, T)>, key: &str, value: T) {
    if !list.iter().any(|(k, _)| k == key) {
        list.push((key.to_owned(), value));
    }
}

/// `d.get('SpecialToken', {}).get('id')` on a template piece.
fn piece_id<'j>(piece: Option<&'j Json>, kind: &str) -> Option<&'j Json> {
    piece?.get(kind)?.get("id").filter(|v| !v.is_null())
}

fn truthy_opt(v: &Option<Json>) -> bool {
    v.as_ref().is_some_and(py_truthy)
}

fn eq_opt(a: &Json, b: &Option<Json>) -> bool {
    b.as_ref() == Some(a)
}

impl SpecialVocab {
    /// Loads like `SpecialVocab(dir, load_merges, special_token_types, n_vocab)`.
    pub fn load(
        src: &Sources<'_>,
        load_merges: bool,
        types: &[&str],
        n_vocab: Option<u64>,
    ) -> Result<SpecialVocab> {
        let mut sv = SpecialVocab {
            types: types.iter().map(|t| (*t).to_owned()).collect(),
            n_vocab,
            load_merges,
            ..SpecialVocab::default()
        };
        sv.load_from_tokenizer_json(src)?;
        sv.load_from_config_json(src)?;
        if sv.load_merges && sv.merges.is_empty() {
            sv.load_merges_txt(src.dir)?;
        }
        Ok(sv)
    }

    fn set_special_token(&mut self, path: &Path, typ: &str, tid: Option<&Json>) -> Result<()> {
        // isinstance(tid, int): JSON integers, and booleans (a Python bool is an int).
        let id: i128 = match tid {
            Some(Json::Number(n)) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => i128::from(u),
                (None, Some(i)) => i128::from(i),
                _ => return Ok(()),
            },
            Some(Json::Bool(b)) => i128::from(*b),
            _ => return Ok(()),
        };
        let bad = || TokenizerError::BadSpecialId {
            path: path.to_path_buf(),
            typ: typ.to_owned(),
            id,
        };
        if id < 0 {
            return Err(bad());
        }
        let id = u64::try_from(id).map_err(|_| bad())?;
        if self.n_vocab.is_none_or(|n| id < n) {
            setdefault(&mut self.ids, typ, id);
        }
        Ok(())
    }

    fn parse_normalizer(&mut self, normalizer: &Json) {
        match normalizer.get("type").and_then(Json::as_str) {
            Some("Lowercase") => self.normalizer_lowercase = Some(true),
            Some("StripAccents") => self.normalizer_strip_accents = Some(true),
            Some("BertNormalizer") => {
                // `null` (e.g. BertNormalizer's default `strip_accents`) writes nothing.
                let flag = |v: &Json| (!v.is_null()).then(|| v.as_bool().unwrap_or(py_truthy(v)));
                if let Some(v) = normalizer.get("lowercase") {
                    self.normalizer_lowercase = flag(v);
                }
                if let Some(v) = normalizer.get("strip_accents") {
                    self.normalizer_strip_accents = flag(v);
                }
            }
            Some("Sequence") => {
                if let Some(list) = normalizer.get("normalizers").and_then(Json::as_array) {
                    for n in list {
                        self.parse_normalizer(n);
                    }
                }
            }
            _ => {}
        }
    }

    fn load_merges_from_json(&mut self, path: &Path, tj: &TokenizerJson) -> Result<()> {
        let Some(merges) = tj.model.as_ref().and_then(|m| m.merges.as_ref()) else {
            return Ok(());
        };
        let MergesField::List(list) = merges else {
            return Ok(());
        };
        if list.is_empty() {
            return Ok(());
        }
        let bad = || TokenizerError::Field {
            path: path.to_path_buf(),
            field: "model.merges".into(),
            problem: "unknown merges format (expected \"a b\" strings or [a, b] string pairs)",
        };
        let pair_form = match list.first() {
            Some(MergeEntry::Str(_)) => false,
            Some(MergeEntry::List(p)) if p.len() == 2 => true,
            _ => return Err(bad()),
        };
        let mut out = Vec::with_capacity(list.len());
        for m in list {
            match (pair_form, m) {
                (false, MergeEntry::Str(s)) => out.push(s.clone()),
                // New format (transformers ≥ 4.45): spaces inside a part become U+0120.
                (true, MergeEntry::List(parts)) => {
                    let mut joined = String::new();
                    for (i, part) in parts.iter().enumerate() {
                        if i > 0 {
                            joined.push(' ');
                        }
                        joined.extend(part.chars().map(|c| if c == ' ' { '\u{120}' } else { c }));
                    }
                    out.push(joined);
                }
                _ => return Err(bad()),
            }
        }
        self.merges = out;
        Ok(())
    }

    fn load_from_tokenizer_json(&mut self, src: &Sources<'_>) -> Result<()> {
        let tj_path = src.dir.join("tokenizer.json");
        let tc_path = src.dir.join("tokenizer_config.json");
        let empty = Vec::new();
        let mut added_tokens: &Vec<Json> = &empty;
        if let Some(tj) = src.tokenizer_json {
            if self.load_merges {
                self.load_merges_from_json(&tj_path, tj)?;
            }
            if let Some(n) = tj.get("normalizer").filter(|n| py_truthy(n)) {
                self.parse_normalizer(n);
            }
            if let Some(a) = tj.get("added_tokens").and_then(Json::as_array) {
                added_tokens = a;
            }
        }
        // The reference edits its copy of tokenizer_config while reading the post-processor.
        let mut tc: Option<Map<String, Json>> = match src.tokenizer_config {
            None => None,
            Some(Json::Object(m)) => Some(m.clone()),
            Some(_) => {
                return Err(TokenizerError::Field {
                    path: tc_path,
                    field: "(top level)".into(),
                    problem: "expected a JSON object",
                })
            }
        };
        let tc_truthy = |tc: &Option<Map<String, Json>>| tc.as_ref().is_some_and(|m| !m.is_empty());
        let get = |tc: &Option<Map<String, Json>>, k: &str| -> Option<Json> {
            tc.as_ref()
                .and_then(|m| m.get(k))
                .filter(|v| !v.is_null())
                .cloned()
        };

        if let Some(tj) = src.tokenizer_json.filter(|t| t.is_truthy()) {
            let mut special_bos = get(&tc, "bos_token");
            let mut special_cls = get(&tc, "cls_token");
            let mut special_eos = get(&tc, "eos_token");
            let mut special_sep = get(&tc, "sep_token");
            if !truthy_opt(&special_bos) && truthy_opt(&special_cls) && tc_truthy(&tc) {
                special_bos = special_cls.clone();
                if let (Some(m), Some(v)) = (tc.as_mut(), special_bos.clone()) {
                    m.insert("bos_token".into(), v);
                }
            }
            if !truthy_opt(&special_eos) && truthy_opt(&special_sep) && tc_truthy(&tc) {
                special_eos = special_sep.clone();
                if let (Some(m), Some(v)) = (tc.as_mut(), special_eos.clone()) {
                    m.insert("eos_token".into(), v);
                }
            }
            if let Some(pp) = tj.get("post_processor").filter(|p| py_truthy(p)) {
                let single = std::slice::from_ref(pp);
                let processors: &[Json] = match pp.get("processors") {
                    Some(Json::Array(list)) => list,
                    Some(_) => &[],
                    None => single,
                };
                for processor in processors {
                    match processor.get("type").and_then(Json::as_str) {
                        Some("ByteLevel") => {
                            setdefault(&mut self.add, "bos", false);
                            setdefault(&mut self.add, "eos", false);
                        }
                        Some("RobertaProcessing") => {
                            set_ordered(&mut self.add, "bos", true);
                            set_ordered(&mut self.add, "eos", true);
                            set_ordered(&mut self.add, "sep", true);
                            if !truthy_opt(&special_cls) && tc_truthy(&tc) {
                                special_cls = processor
                                    .get("cls")
                                    .and_then(|c| c.get(0))
                                    .cloned()
                                    .or_else(|| special_bos.clone());
                                if let Some(m) = tc.as_mut() {
                                    m.insert(
                                        "cls_token".into(),
                                        special_cls.clone().unwrap_or(Json::Null),
                                    );
                                }
                            }
                            if !truthy_opt(&special_sep) && tc_truthy(&tc) {
                                special_sep = processor
                                    .get("sep")
                                    .and_then(|c| c.get(0))
                                    .cloned()
                                    .or_else(|| special_eos.clone());
                                if let Some(m) = tc.as_mut() {
                                    m.insert(
                                        "sep_token".into(),
                                        special_sep.clone().unwrap_or(Json::Null),
                                    );
                                }
                            }
                        }
                        Some("TemplateProcessing") => {
                            let empty_list = Vec::new();
                            let tmpl_single = processor
                                .get("single")
                                .and_then(Json::as_array)
                                .unwrap_or(&empty_list);
                            let tmpl_pair = processor
                                .get("pair")
                                .and_then(Json::as_array)
                                .unwrap_or(&empty_list);
                            let mut special_first: Option<Json> = None;
                            let mut special_last: Option<Json> = None;
                            if tmpl_single.len() > 1 {
                                special_first = piece_id(tmpl_single.first(), "SpecialToken")
                                    .filter(|v| py_truthy(v))
                                    .cloned();
                                if let Some(first) = special_first.clone() {
                                    let known = eq_opt(&first, &special_bos)
                                        || eq_opt(&first, &special_cls);
                                    if !tc_truthy(&tc) {
                                        special_bos = Some(first.clone());
                                    } else if !known {
                                        if !truthy_opt(&special_bos) {
                                            special_bos = Some(first.clone());
                                            if let Some(m) = tc.as_mut() {
                                                m.insert("bos_token".into(), first.clone());
                                            }
                                        }
                                        if !truthy_opt(&special_cls) {
                                            special_cls = Some(first.clone());
                                            if let Some(m) = tc.as_mut() {
                                                m.insert("cls_token".into(), first.clone());
                                            }
                                        }
                                    }
                                    let known = eq_opt(&first, &special_bos)
                                        || eq_opt(&first, &special_cls);
                                    set_ordered(&mut self.add, "bos", known);
                                }
                                special_last = piece_id(tmpl_single.last(), "SpecialToken")
                                    .filter(|v| py_truthy(v))
                                    .cloned();
                                if let Some(last) = special_last.clone() {
                                    if !tc_truthy(&tc) {
                                        special_eos = Some(last.clone());
                                    } else if !eq_opt(&last, &special_eos) {
                                        let old_eos = special_eos.clone().unwrap_or(Json::Null);
                                        if !self.types.iter().any(|t| t == "eot") {
                                            self.types.push("eot".into());
                                            if let Some(m) = tc.as_mut() {
                                                m.insert("eot_token".into(), old_eos);
                                            }
                                        } else if !self.types.iter().any(|t| t == "eom") {
                                            self.types.push("eom".into());
                                            if let Some(m) = tc.as_mut() {
                                                m.insert("eom_token".into(), old_eos);
                                            }
                                        }
                                        special_eos = Some(last.clone());
                                        if let Some(m) = tc.as_mut() {
                                            m.insert("eos_token".into(), last.clone());
                                        }
                                    }
                                    set_ordered(&mut self.add, "eos", eq_opt(&last, &special_eos));
                                }
                            }
                            if !tmpl_pair.is_empty() {
                                let seq_start =
                                    usize::from(special_first.as_ref().is_some_and(|f| {
                                        piece_id(tmpl_pair.first(), "SpecialToken") == Some(f)
                                    }));
                                let drop_last = special_last.as_ref().is_some_and(|l| {
                                    piece_id(tmpl_pair.last(), "SpecialToken") == Some(l)
                                });
                                let end = if drop_last {
                                    tmpl_pair.len().saturating_sub(1)
                                } else {
                                    tmpl_pair.len()
                                };
                                let pair = tmpl_pair.get(seq_start..end).unwrap_or(&[]);
                                if !pair.is_empty() {
                                    let a =
                                        piece_id(pair.first(), "Sequence").and_then(Json::as_str);
                                    let b =
                                        piece_id(pair.last(), "Sequence").and_then(Json::as_str);
                                    let middle =
                                        pair.get(1..pair.len().saturating_sub(1)).unwrap_or(&[]);
                                    if a == Some("A") && b == Some("B") && !middle.is_empty() {
                                        let sep_or_eos = |v: &Json| {
                                            eq_opt(v, &special_sep) || eq_opt(v, &special_eos)
                                        };
                                        let mut add_sep = false;
                                        if let Some(entry) =
                                            piece_id(middle.first(), "SpecialToken")
                                                .filter(|v| py_truthy(v))
                                        {
                                            if sep_or_eos(entry) && !truthy_opt(&special_last) {
                                                add_sep = true;
                                            }
                                        }
                                        if middle.len() == 2 {
                                            if let Some(entry) =
                                                piece_id(middle.get(1), "SpecialToken")
                                                    .filter(|v| py_truthy(v))
                                            {
                                                if sep_or_eos(entry) {
                                                    add_sep = true;
                                                }
                                            }
                                        }
                                        set_ordered(&mut self.add, "sep", add_sep);
                                        if add_sep && !truthy_opt(&special_sep) && tc_truthy(&tc) {
                                            if let Some(m) = tc.as_mut() {
                                                m.insert(
                                                    "sep_token".into(),
                                                    special_eos.clone().unwrap_or(Json::Null),
                                                );
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }

        let Some(tc) = tc.filter(|m| !m.is_empty()) else {
            return Ok(());
        };

        self.chat_template = match tc.get("chat_template") {
            Some(v) => template_from_json(v),
            None => chat_template_alt(src.dir)?,
        };

        let types = self.types.clone();
        for typ in &types {
            if let Some(Json::Bool(b)) = tc.get(&format!("add_{typ}_token")) {
                setdefault(&mut self.add, typ, *b);
            }
            let content = match tc.get(&format!("{typ}_token")) {
                Some(Json::String(s)) => s.as_str(),
                Some(Json::Object(o)) => match o.get("content") {
                    Some(Json::String(s)) => s.as_str(),
                    _ => continue,
                },
                _ => continue,
            };
            let found = added_tokens
                .iter()
                .find(|t| t.get("content").and_then(Json::as_str) == Some(content))
                .and_then(|t| t.get("id"));
            self.set_special_token(&tj_path, typ, found)?;
        }
        Ok(())
    }

    fn load_from_config_json(&mut self, src: &Sources<'_>) -> Result<()> {
        let path = src.dir.join("config.json");
        let types = self.types.clone();
        for typ in &types {
            let key = format!("{typ}_token_id");
            let mut id = src.config.get(&key).filter(|v| !v.is_null());
            if id.is_none() {
                if let Some(tc) = src.config.get("text_config") {
                    id = tc.get(&key).filter(|v| !v.is_null());
                }
            }
            self.set_special_token(&path, typ, id)?;
        }
        Ok(())
    }

    fn load_merges_txt(&mut self, dir: &Path) -> Result<()> {
        let path = dir.join("merges.txt");
        let Some(text) = read_text_opt(&path)? else {
            return Ok(());
        };
        let mut lines = text.lines().peekable();
        if lines.peek().is_some_and(|l| l.trim().starts_with('#')) {
            lines.next();
        }
        let mut merges = Vec::new();
        for line in lines {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().take(3).collect();
            if let [a, b] = parts.as_slice() {
                merges.push(format!("{a} {b}"));
            }
        }
        self.merges = merges;
        Ok(())
    }

    /// Writes like `SpecialVocab.add_to_gguf`. `path` names the file blamed for an id that does
    /// not fit GGUF's u32 field.
    pub fn add_to(&self, kvs: &mut KvList, path: &Path) -> Result<()> {
        if !self.merges.is_empty() {
            kvs.set_array(kv::MERGES, Value::str_array(&self.merges));
        }
        for (typ, id) in &self.ids {
            if let Some(key) = kv::special_id_key(typ) {
                let id32 = u32::try_from(*id).map_err(|_| TokenizerError::BadSpecialId {
                    path: path.to_path_buf(),
                    typ: typ.clone(),
                    id: i128::from(*id),
                })?;
                kvs.set(key, Value::U32(id32));
            }
        }
        for (typ, flag) in &self.add {
            if let Some(key) = kv::add_special_key(typ) {
                kvs.set(key, Value::Bool(*flag));
            }
        }
        if let Some(t) = &self.chat_template {
            add_chat_template(kvs, t);
        }
        if let Some(b) = self.normalizer_lowercase {
            kvs.set(kv::NORMALIZER_LOWERCASE, Value::Bool(b));
        }
        if let Some(b) = self.normalizer_strip_accents {
            kvs.set(kv::NORMALIZER_STRIP_ACCENTS, Value::Bool(b));
        }
        Ok(())
    }

    /// Sets (or overrides) a special id the way `_set_special_token` does.
    pub fn set_id(&mut self, typ: &str, id: u64) {
        if self.n_vocab.is_none_or(|n| id < n) {
            setdefault(&mut self.ids, typ, id);
        }
    }
}

fn template_from_json(v: &Json) -> Option<ChatTemplate> {
    match v {
        Json::String(s) => Some(ChatTemplate::Single(s.clone())),
        Json::Array(list) => Some(ChatTemplate::Named(
            list.iter()
                .filter_map(|c| {
                    let name = c.get("name").and_then(Json::as_str).unwrap_or("");
                    let template = c.get("template").and_then(Json::as_str)?;
                    Some((name.to_owned(), template.to_owned()))
                })
                .collect(),
        )),
        _ => None,
    }
}

/// `chat_template.jinja` (plus `additional_chat_templates/*.jinja`, in file-name order), else
/// `chat_template.json`'s `chat_template`.
fn chat_template_alt(dir: &Path) -> Result<Option<ChatTemplate>> {
    if let Some(default) = read_text_opt(&dir.join("chat_template.jinja"))? {
        let extra_dir = dir.join("additional_chat_templates");
        let mut extra: Vec<(String, String)> = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&extra_dir) {
            let mut paths: Vec<_> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
                .collect();
            paths.sort();
            for p in paths {
                let name = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Some(text) = read_text_opt(&p)? {
                    extra.push((name, text));
                }
            }
        }
        if extra.is_empty() {
            return Ok(Some(ChatTemplate::Single(default)));
        }
        let mut all = vec![("default".to_owned(), default)];
        all.extend(extra);
        return Ok(Some(ChatTemplate::Named(all)));
    }
    let json_path = dir.join("chat_template.json");
    match read_json_opt(&json_path)? {
        Some(v) => Ok(v.get("chat_template").and_then(template_from_json)),
        None => Ok(None),
    }
}

/// `GGUFWriter.add_chat_template`.
fn add_chat_template(kvs: &mut KvList, t: &ChatTemplate) {
    match t {
        ChatTemplate::Single(s) => kvs.set_str(kv::CHAT_TEMPLATE, s),
        ChatTemplate::Named(list) => {
            let mut default = None;
            let mut names: Vec<String> = Vec::new();
            for (name, template) in list {
                let name: String = name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                if name.is_empty() {
                    continue;
                }
                if name == "default" {
                    default = Some(template);
                } else {
                    if !names.contains(&name) {
                        names.push(name.clone());
                    }
                    kvs.set_str(&format!("{}.{name}", kv::CHAT_TEMPLATE), template);
                }
            }
            if !names.is_empty() {
                // The reference writes a Python set here (unordered); we keep file order.
                kvs.set_array(
                    kv::CHAT_TEMPLATES,
                    Value::array(
                        ValueType::String,
                        names.iter().map(|n| Value::str(n.as_str())).collect(),
                    ),
                );
            }
            if let Some(d) = default {
                kvs.set_str(kv::CHAT_TEMPLATE, d);
            }
        }
    }
}
