//! `tokenizer.json`, parsed in one pass: every field as a JSON value, except the two big ones,
//! `model.vocab` (read straight into the BPE vocabulary map) and `model.merges` (one entry per
//! merge, string or pair). A generic `serde_json::Value` of Qwen's 151k-token file costs about
//! three times as much.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as Json};
use tokenizers::models::bpe::Vocab;

/// `model.vocab`.
#[derive(Debug)]
pub enum VocabField {
    /// `{"token": id}` with every id a u32 (BPE, WordPiece, WordLevel).
    Map(Vocab),
    /// Anything else (Unigram's `[[piece, score], …]`, or ids out of range), kept as JSON.
    Other(Json),
}

/// One entry of `model.merges`.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeEntry {
    /// `"a b"`.
    Str(String),
    /// `["a", "b"]` (any length, all strings).
    List(Vec<String>),
    /// Anything else.
    Other(Json),
}

impl MergeEntry {
    fn to_json(&self) -> Json {
        match self {
            MergeEntry::Str(s) => Json::String(s.clone()),
            MergeEntry::List(l) => Json::Array(l.iter().cloned().map(Json::String).collect()),
            MergeEntry::Other(j) => j.clone(),
        }
    }
}

/// `model.merges`.
#[derive(Debug)]
pub enum MergesField {
    /// A list.
    List(Vec<MergeEntry>),
    /// Not a list.
    Other(Json),
}

/// The `model` object.
#[derive(Debug, Default)]
pub struct ModelJson {
    /// Every field but `vocab` and `merges`.
    pub fields: Map<String, Json>,
    /// `vocab`.
    pub vocab: Option<VocabField>,
    /// `merges`.
    pub merges: Option<MergesField>,
}

impl ModelJson {
    /// A small field.
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.fields.get(key)
    }

    /// The whole object as JSON (for the `tokenizers` crate's generic model loader).
    pub fn to_json(&self) -> Json {
        let mut m = self.fields.clone();
        match &self.vocab {
            Some(VocabField::Map(v)) => {
                let mut pairs: Vec<(&String, &u32)> = v.iter().collect();
                pairs.sort_by_key(|(_, id)| **id);
                let obj: Map<String, Json> = pairs
                    .into_iter()
                    .map(|(k, id)| (k.clone(), Json::from(*id)))
                    .collect();
                m.insert("vocab".into(), Json::Object(obj));
            }
            Some(VocabField::Other(j)) => {
                m.insert("vocab".into(), j.clone());
            }
            None => {}
        }
        match &self.merges {
            Some(MergesField::List(l)) => {
                m.insert(
                    "merges".into(),
                    Json::Array(l.iter().map(MergeEntry::to_json).collect()),
                );
            }
            Some(MergesField::Other(j)) => {
                m.insert("merges".into(), j.clone());
            }
            None => {}
        }
        Json::Object(m)
    }
}

/// The parsed `tokenizer.json`.
#[derive(Debug, Default)]
pub struct TokenizerJson {
    /// Top-level fields but `model`.
    pub fields: Map<String, Json>,
    /// `model`, when it is an object.
    pub model: Option<ModelJson>,
    /// `model` when it is not an object (kept for error reporting).
    pub model_other: Option<Json>,
}

impl TokenizerJson {
    /// A top-level field other than `model`.
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.fields.get(key)
    }

    /// Python truthiness of the whole object.
    pub fn is_truthy(&self) -> bool {
        !self.fields.is_empty() || self.model.is_some() || self.model_other.is_some()
    }
}

/// Parses `tokenizer.json` text.
pub fn parse(text: &str) -> serde_json::Result<TokenizerJson> {
    serde_json::from_str(text)
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = TokenizerJson;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tokenizer.json object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TokenizerJson, A::Error> {
        let mut out = TokenizerJson::default();
        while let Some(key) = map.next_key::<String>()? {
            if key == "model" {
                match map.next_value::<ModelOrOther>()? {
                    ModelOrOther::Model(m) => {
                        out.model = Some(m);
                        out.model_other = None;
                    }
                    ModelOrOther::Other(j) => {
                        out.model = None;
                        out.model_other = Some(j);
                    }
                }
            } else {
                let v: Json = map.next_value()?;
                out.fields.insert(key, v);
            }
        }
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for TokenizerJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TopVisitor)
    }
}

enum ModelOrOther {
    Model(ModelJson),
    Other(Json),
}

struct ModelVisitor;

impl<'de> Visitor<'de> for ModelVisitor {
    type Value = ModelOrOther;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a model object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ModelOrOther, A::Error> {
        let mut out = ModelJson::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "vocab" => out.vocab = Some(map.next_value::<VocabField>()?),
                "merges" => out.merges = Some(map.next_value::<MergesField>()?),
                _ => {
                    let v: Json = map.next_value()?;
                    out.fields.insert(key, v);
                }
            }
        }
        Ok(ModelOrOther::Model(out))
    }

    fn visit_unit<E: de::Error>(self) -> Result<ModelOrOther, E> {
        Ok(ModelOrOther::Other(Json::Null))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<ModelOrOther, E> {
        Ok(ModelOrOther::Other(Json::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ModelOrOther, E> {
        Ok(ModelOrOther::Other(Json::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ModelOrOther, E> {
        Ok(ModelOrOther::Other(Json::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ModelOrOther, E> {
        Ok(ModelOrOther::Other(Json::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ModelOrOther, E> {
        Ok(ModelOrOther::Other(Json::String(v.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ModelOrOther, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Json>()? {
            items.push(v);
        }
        Ok(ModelOrOther::Other(Json::Array(items)))
    }
}

impl<'de> Deserialize<'de> for ModelOrOther {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ModelVisitor)
    }
}

struct VocabVisitor;

impl<'de> Visitor<'de> for VocabVisitor {
    type Value = VocabField;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a vocabulary")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<VocabField, A::Error> {
        let mut vocab = Vocab::default();
        let mut other: Option<Map<String, Json>> = None;
        while let Some(key) = map.next_key::<String>()? {
            let v: Json = map.next_value()?;
            if let Some(o) = other.as_mut() {
                o.insert(key, v);
                continue;
            }
            match v.as_u64().and_then(|i| u32::try_from(i).ok()) {
                Some(id) => {
                    vocab.insert(key, id);
                }
                None => {
                    // Not a u32 id: keep the whole object as JSON from here on.
                    let mut o: Map<String, Json> =
                        vocab.drain().map(|(k, id)| (k, Json::from(id))).collect();
                    o.insert(key, v);
                    other = Some(o);
                }
            }
        }
        Ok(match other {
            Some(o) => VocabField::Other(Json::Object(o)),
            None => VocabField::Map(vocab),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<VocabField, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Json>()? {
            items.push(v);
        }
        Ok(VocabField::Other(Json::Array(items)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<VocabField, E> {
        Ok(VocabField::Other(Json::Null))
    }
}

impl<'de> Deserialize<'de> for VocabField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(VocabVisitor)
    }
}

struct MergesVisitor;

impl<'de> Visitor<'de> for MergesVisitor {
    type Value = MergesField;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a merges list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MergesField, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element::<MergeEntryDe>()? {
            items.push(v.0);
        }
        Ok(MergesField::List(items))
    }

    fn visit_unit<E: de::Error>(self) -> Result<MergesField, E> {
        Ok(MergesField::Other(Json::Null))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MergesField, A::Error> {
        let mut o = Map::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            o.insert(k, v);
        }
        Ok(MergesField::Other(Json::Object(o)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<MergesField, E> {
        Ok(MergesField::Other(Json::String(v.to_owned())))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<MergesField, E> {
        Ok(MergesField::Other(Json::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<MergesField, E> {
        Ok(MergesField::Other(Json::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<MergesField, E> {
        Ok(MergesField::Other(Json::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<MergesField, E> {
        Ok(MergesField::Other(Json::from(v)))
    }
}

impl<'de> Deserialize<'de> for MergesField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MergesVisitor)
    }
}

struct MergeEntryDe(MergeEntry);

struct MergeEntryVisitor;

impl<'de> Visitor<'de> for MergeEntryVisitor {
    type Value = MergeEntryDe;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a merge")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<MergeEntryDe, E> {
        Ok(MergeEntryDe(MergeEntry::Str(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<MergeEntryDe, E> {
        Ok(MergeEntryDe(MergeEntry::Str(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MergeEntryDe, A::Error> {
        let mut parts: Vec<Json> = Vec::with_capacity(2);
        while let Some(v) = seq.next_element::<Json>()? {
            parts.push(v);
        }
        if parts.iter().all(Json::is_string) {
            let strings = parts
                .into_iter()
                .filter_map(|p| match p {
                    Json::String(s) => Some(s),
                    _ => None,
                })
                .collect();
            Ok(MergeEntryDe(MergeEntry::List(strings)))
        } else {
            Ok(MergeEntryDe(MergeEntry::Other(Json::Array(parts))))
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<MergeEntryDe, E> {
        Ok(MergeEntryDe(MergeEntry::Other(Json::Null)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<MergeEntryDe, E> {
        Ok(MergeEntryDe(MergeEntry::Other(Json::Bool(v))))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<MergeEntryDe, E> {
        Ok(MergeEntryDe(MergeEntry::Other(Json::from(v))))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<MergeEntryDe, E> {
        Ok(MergeEntryDe(MergeEntry::Other(Json::from(v))))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<MergeEntryDe, E> {
        Ok(MergeEntryDe(MergeEntry::Other(Json::from(v))))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MergeEntryDe, A::Error> {
        let mut o = Map::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            o.insert(k, v);
        }
        Ok(MergeEntryDe(MergeEntry::Other(Json::Object(o))))
    }
}

impl<'de> Deserialize<'de> for MergeEntryDe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MergeEntryVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_out_vocab_and_merges() {
        let tj = parse(
            r#"{"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0, "b": 1},
                "merges": ["a b", ["a", "b"], 3]}, "normalizer": null}"#,
        )
        .unwrap();
        assert_eq!(tj.get("version"), Some(&Json::from("1.0")));
        let model = tj.model.as_ref().unwrap();
        assert_eq!(model.get("type"), Some(&Json::from("BPE")));
        let Some(VocabField::Map(v)) = &model.vocab else {
            panic!()
        };
        assert_eq!(v.get("b"), Some(&1));
        let Some(MergesField::List(m)) = &model.merges else {
            panic!()
        };
        assert_eq!(m[0], MergeEntry::Str("a b".into()));
        assert_eq!(m[1], MergeEntry::List(vec!["a".into(), "b".into()]));
        assert_eq!(m[2], MergeEntry::Other(Json::from(3)));
        let back = model.to_json();
        assert_eq!(back["vocab"]["a"], Json::from(0));
        assert_eq!(back["merges"][1][1], Json::from("b"));
    }

    #[test]
    fn non_u32_vocab_is_kept_as_json() {
        let tj = parse(r#"{"model": {"vocab": [["a", -1.5]]}}"#).unwrap();
        assert!(matches!(
            tj.model.unwrap().vocab,
            Some(VocabField::Other(_))
        ));
        let tj = parse(r#"{"model": {"vocab": {"a": 0, "b": -1}}}"#).unwrap();
        let Some(VocabField::Other(j)) = tj.model.unwrap().vocab else {
            panic!()
        };
        assert_eq!(j["a"], Json::from(0));
        assert_eq!(j["b"], Json::from(-1));
    }
}
