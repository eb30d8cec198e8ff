//! The SentencePiece path (`_set_vocab_sentencepiece` + `_create_vocab_sentencepiece`):
//! `tokenizer.model` is parsed here (protobuf `ModelProto`: field 1 = repeated `SentencePiece`
//! {1: piece, 2: score (float), 3: type}); other fields are skipped.
//!
//! Facts (fixtures README, SentencePiece section): all `vocab_size` slots start as `[PAD{i}]`,
//! score −10000.0, UNUSED; each model piece below `vocab_size` copies its text, its score as
//! stored (f32 bits, −0.0 kept) and its type (UNKNOWN, CONTROL, UNUSED, BYTE, else NORMAL —
//! USER_DEFINED pieces become NORMAL). Then `added_tokens.json` (score −1000, USER_DEFINED) and
//! `tokenizer_config.json` `added_tokens_decoder` (score −1000, CONTROL if `special` or the text
//! looks special, else USER_DEFINED with `▁` → space) override slots.

use std::collections::HashSet;
use std::path::Path;

use fairy2i_format::gguf::{Value, ValueType};
use serde_json::Value as Json;

use super::gpt2::token_type;
use super::kv::{self, KvList};
use super::special::{Sources, SpecialVocab, DEFAULT_TYPES};
use super::{looks_special, read_bytes, read_json_opt, Result, TokenizerError};

/// One `SentencePiece` entry of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// The piece text (`▁` for spaces, `<0xAB>` for byte pieces).
    pub piece: String,
    /// The score as stored.
    pub score: f32,
    /// `SentencePiece.Type`: 1 NORMAL, 2 UNKNOWN, 3 CONTROL, 4 USER_DEFINED, 5 UNUSED, 6 BYTE.
    pub kind: i32,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the file, for messages.
    base: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, problem: &'static str, path: &Path) -> TokenizerError {
        TokenizerError::Protobuf {
            path: path.to_path_buf(),
            offset: self.base + self.pos,
            problem,
        }
    }

    fn varint(&mut self, path: &Path) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| self.err("truncated varint", path))?;
            self.pos += 1;
            if shift < 64 {
                v |= u64::from(b & 0x7f) << shift;
            }
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes", path))
    }

    fn bytes(&mut self, n: u64, path: &Path) -> Result<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| self.err("length past end of data", path))?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("length past end of data", path))?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.err("length past end of data", path))?;
        self.pos = end;
        Ok(out)
    }

    /// Reads a field's value of `wire` type, returning it as (varint, bytes).
    fn skip(&mut self, wire: u64, path: &Path) -> Result<()> {
        match wire {
            0 => self.varint(path).map(drop),
            1 => self.bytes(8, path).map(drop),
            2 => {
                let n = self.varint(path)?;
                self.bytes(n, path).map(drop)
            }
            5 => self.bytes(4, path).map(drop),
            _ => Err(self.err("unsupported protobuf wire type", path)),
        }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }
}

fn parse_piece(buf: &[u8], base: usize, path: &Path) -> Result<Piece> {
    let mut r = Reader { buf, pos: 0, base };
    let mut piece = Piece {
        piece: String::new(),
        score: 0.0,
        kind: 1,
    };
    while !r.done() {
        let tag = r.varint(path)?;
        let (field, wire) = (tag >> 3, tag & 7);
        match (field, wire) {
            (1, 2) => {
                let n = r.varint(path)?;
                let at = r.base + r.pos;
                let bytes = r.bytes(n, path)?;
                piece.piece =
                    String::from_utf8(bytes.to_vec()).map_err(|_| TokenizerError::Protobuf {
                        path: path.to_path_buf(),
                        offset: at,
                        problem: "piece is not valid UTF-8",
                    })?;
            }
            (2, 5) => {
                let b = r.bytes(4, path)?;
                let arr: [u8; 4] = b.try_into().map_err(|_| r.err("truncated float", path))?;
                piece.score = f32::from_le_bytes(arr);
            }
            (3, 0) => {
                // An enum value outside the declared ones is kept as an unknown field by
                // protobuf; the field keeps its previous value.
                let v = r.varint(path)?;
                if (1..=6).contains(&v) {
                    piece.kind = i32::try_from(v).unwrap_or(1);
                }
            }
            (1..=3, _) => return Err(r.err("SentencePiece field with the wrong wire type", path)),
            (0, _) => return Err(r.err("protobuf field number 0", path)),
            _ => r.skip(wire, path)?,
        }
    }
    Ok(piece)
}

/// Parses the pieces of a SentencePiece `ModelProto`, checking what `SentencePieceProcessor`
/// checks on load: no empty or duplicate piece, exactly one unknown piece.
pub fn parse_model(bytes: &[u8], path: &Path) -> Result<Vec<Piece>> {
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        base: 0,
    };
    let mut pieces = Vec::new();
    while !r.done() {
        let tag = r.varint(path)?;
        let (field, wire) = (tag >> 3, tag & 7);
        match (field, wire) {
            (1, 2) => {
                let n = r.varint(path)?;
                let base = r.pos;
                let body = r.bytes(n, path)?;
                pieces.push(parse_piece(body, base, path)?);
            }
            (1, _) => return Err(r.err("pieces field with the wrong wire type", path)),
            (0, _) => return Err(r.err("protobuf field number 0", path)),
            _ => r.skip(wire, path)?,
        }
    }
    let bad = |id: usize, problem: &'static str| TokenizerError::BadPiece {
        path: path.to_path_buf(),
        id,
        problem,
    };
    if pieces.is_empty() {
        return Err(TokenizerError::Protobuf {
            path: path.to_path_buf(),
            offset: 0,
            problem: "no pieces",
        });
    }
    let mut seen: HashSet<&str> = HashSet::with_capacity(pieces.len());
    let mut unk = 0usize;
    for (id, p) in pieces.iter().enumerate() {
        if p.piece.is_empty() {
            return Err(bad(id, "empty piece"));
        }
        if !seen.insert(p.piece.as_str()) {
            return Err(bad(id, "piece defined twice"));
        }
        if p.kind == 2 {
            unk += 1;
        }
    }
    if unk != 1 {
        return Err(bad(0, "the model must have exactly one unknown piece"));
    }
    Ok(pieces)
}

/// Tokens, scores and token types (`_create_vocab_sentencepiece`).
pub struct SpmVocab {
    /// Token texts.
    pub tokens: Vec<String>,
    /// Scores.
    pub scores: Vec<f32>,
    /// Token types.
    pub types: Vec<i32>,
}

/// `_create_vocab_sentencepiece`; `hparam_vocab` is `config.json`'s `vocab_size` (or the class
/// default), overridden by `vocab_size_per_layer_input` when present; 0 means the model's size.
pub fn create_vocab(src: &Sources<'_>, hparam_vocab: u64) -> Result<SpmVocab> {
    let path = src.dir.join("tokenizer.model");
    let bytes = read_bytes(&path)?;
    let pieces = parse_model(&bytes, &path)?;

    let configured = match src
        .config
        .get("vocab_size_per_layer_input")
        .and_then(Json::as_u64)
    {
        Some(v) => v,
        None => hparam_vocab,
    };
    let vocab_size = if configured == 0 {
        pieces.len()
    } else {
        usize::try_from(configured).map_err(|_| TokenizerError::Field {
            path: src.dir.join("config.json"),
            field: "vocab_size".into(),
            problem: "too large",
        })?
    };

    let mut tokens: Vec<String> = (0..vocab_size).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![-10000.0f32; vocab_size];
    let mut types = vec![token_type::UNUSED; vocab_size];
    for (id, p) in pieces.iter().enumerate().take(vocab_size) {
        let t = match p.kind {
            2 => token_type::UNKNOWN,
            3 => token_type::CONTROL,
            5 => token_type::UNUSED,
            6 => token_type::BYTE,
            _ => token_type::NORMAL,
        };
        if let (Some(tok), Some(score), Some(ty)) =
            (tokens.get_mut(id), scores.get_mut(id), types.get_mut(id))
        {
            tok.clone_from(&p.piece);
            *score = p.score;
            *ty = t;
        }
    }

    let mut set = |id: u64, text: String, ty: i32| {
        if let Ok(id) = usize::try_from(id) {
            if let (Some(tok), Some(score), Some(slot)) =
                (tokens.get_mut(id), scores.get_mut(id), types.get_mut(id))
            {
                *tok = text;
                *score = -1000.0;
                *slot = ty;
            }
        }
    };

    let at_path = src.dir.join("added_tokens.json");
    if let Some(at) = read_json_opt(&at_path)? {
        let bad = || TokenizerError::Field {
            path: at_path.clone(),
            field: "(top level)".into(),
            problem: "expected {\"<token>\": <non-negative id>, …}",
        };
        for (key, id) in at.as_object().ok_or_else(bad)? {
            let id = id.as_u64().ok_or_else(bad)?;
            set(id, key.clone(), token_type::USER_DEFINED);
        }
    }

    if let Some(atd) = src
        .tokenizer_config
        .and_then(|tc| tc.get("added_tokens_decoder"))
    {
        let bad = || TokenizerError::Field {
            path: src.dir.join("tokenizer_config.json"),
            field: "added_tokens_decoder".into(),
            problem: "expected {\"<non-negative id>\": {\"content\": …}, …}",
        };
        for (id, data) in atd.as_object().ok_or_else(bad)? {
            let id: u64 = id.trim().parse().map_err(|_| bad())?;
            let token = data.get("content").and_then(Json::as_str).ok_or_else(bad)?;
            let special = data.get("special").is_some_and(super::py_truthy);
            if special || looks_special(token) {
                set(id, token.to_owned(), token_type::CONTROL);
            } else {
                set(id, token.replace('\u{2581}', " "), token_type::USER_DEFINED);
            }
        }
    }

    Ok(SpmVocab {
        tokens,
        scores,
        types,
    })
}

/// `_set_vocab_sentencepiece`: model `llama`, pre `default`, tokens, scores, token types, then
/// SpecialVocab (no merges, ids below the vocabulary size).
pub fn set_vocab(src: &Sources<'_>, kvs: &mut KvList, hparam_vocab: u64) -> Result<()> {
    let v = create_vocab(src, hparam_vocab)?;
    kvs.set_str(kv::MODEL, "llama");
    kvs.set_str(kv::PRE, "default");
    kvs.set_array(kv::TOKENS, Value::str_array(&v.tokens));
    kvs.set_array(
        kv::SCORES,
        Value::array(
            ValueType::F32,
            v.scores.iter().map(|&s| Value::F32(s)).collect(),
        ),
    );
    kvs.set_array(
        kv::TOKEN_TYPE,
        Value::array(
            ValueType::I32,
            v.types.iter().map(|&t| Value::I32(t)).collect(),
        ),
    );
    let n_vocab = u64::try_from(v.tokens.len()).unwrap_or(u64::MAX);
    let sv = SpecialVocab::load(src, false, &DEFAULT_TYPES, Some(n_vocab))?;
    sv.add_to(kvs, &src.dir.join("config.json"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(text: &str, score: f32, kind: Option<u8>) -> Vec<u8> {
        let mut body = vec![0x0a, u8::try_from(text.len()).unwrap()];
        body.extend_from_slice(text.as_bytes());
        body.push(0x15);
        body.extend_from_slice(&score.to_le_bytes());
        if let Some(k) = kind {
            body.extend_from_slice(&[0x18, k]);
        }
        let mut out = vec![0x0a, u8::try_from(body.len()).unwrap()];
        out.extend(body);
        out
    }

    #[test]
    fn parses_pieces_and_keeps_score_bits() {
        let mut model = piece("<unk>", 0.0, Some(2));
        model.extend(piece("\u{2581}t", -0.0, None));
        // An unrelated field (trainer_spec, 2) is skipped.
        model.extend_from_slice(&[0x12, 0x02, 0x08, 0x01]);
        let p = parse_model(&model, Path::new("m")).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].kind, 2);
        assert_eq!(p[1].kind, 1);
        assert_eq!(p[1].piece, "\u{2581}t");
        assert_eq!(p[1].score.to_bits(), 0x8000_0000);
    }

    #[test]
    fn rejects_truncated_and_unk_less_models() {
        let model = piece("<unk>", 0.0, Some(2));
        let cut = &model[..model.len() - 2];
        let e = parse_model(cut, Path::new("m")).unwrap_err().to_string();
        assert!(e.contains("past end") || e.contains("truncated"), "{e}");
        let e = parse_model(&piece("a", 0.0, None), Path::new("m"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown piece"), "{e}");
    }
}
