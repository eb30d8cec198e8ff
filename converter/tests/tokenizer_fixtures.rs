//! The tokenizer module against the GGUFs written by llama.cpp b11434's own
//! `convert_hf_to_gguf.py` (shared/fixtures/reference), plus bad-input cases.
//!
//! Fixtures: `$FAIRY2I_SHARED/fixtures`, else `<workspace>/../shared/fixtures`. When absent the
//! fixture tests print `SKIPPED: …` and pass, unless `FAIRY2I_REQUIRE_FIXTURES=1`.

// Until the converter declares `mod hf;`, the module is compiled here directly.
#[path = "../src/hf/tokenizer/mod.rs"]
#[allow(dead_code)]
mod tokenizer;

use std::path::{Path, PathBuf};

use fairy2i_format::gguf::{MappedGguf, Value};
use tokenizer::{tokenizer_kvs, TokenizerError, TokenizerInput};

fn fixtures() -> Option<PathBuf> {
    let shared = match std::env::var_os("FAIRY2I_SHARED") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    let dir = shared.join("fixtures");
    if dir.join("reference").is_dir() {
        return Some(dir);
    }
    let reason = format!("fixtures not found at {}", dir.display());
    if std::env::var("FAIRY2I_REQUIRE_FIXTURES").as_deref() == Ok("1") {
        panic!("{reason} (FAIRY2I_REQUIRE_FIXTURES=1)");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

fn config(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn convert(dir: &Path, arch: &str) -> Result<Vec<(String, Value)>, TokenizerError> {
    let config = config(dir);
    tokenizer_kvs(&TokenizerInput {
        dir,
        config: &config,
        arch,
    })
}

/// The reference's tokenizer KVs: everything after `general.quantization_version`.
fn reference_kvs(path: &Path) -> Vec<(String, Value)> {
    let mapped = MappedGguf::open(path).unwrap();
    let gguf = mapped.parse().unwrap();
    let all: Vec<(String, Value)> = gguf
        .metadata
        .iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect();
    let pos = all
        .iter()
        .position(|(k, _)| k == "general.quantization_version")
        .unwrap();
    all[pos + 1..].to_vec()
}

fn describe(v: &Value) -> String {
    v.summary(4)
}

fn assert_same(ours: &[(String, Value)], reference: &[(String, Value)]) {
    let ours_keys: Vec<&str> = ours.iter().map(|(k, _)| k.as_str()).collect();
    let ref_keys: Vec<&str> = reference.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(ours_keys, ref_keys, "key order");
    for ((key, a), (_, b)) in ours.iter().zip(reference) {
        assert_eq!(a.value_type(), b.value_type(), "{key}: type");
        match (a, b) {
            (Value::Array(x), Value::Array(y)) => {
                assert_eq!(x.elem_type, y.elem_type, "{key}: element type");
                assert_eq!(x.items.len(), y.items.len(), "{key}: length");
                for (i, (p, q)) in x.items.iter().zip(&y.items).enumerate() {
                    let same = match (p, q) {
                        // Scores: compare bits (−0.0 must stay −0.0).
                        (Value::F32(s), Value::F32(t)) => s.to_bits() == t.to_bits(),
                        _ => p == q,
                    };
                    assert!(
                        same,
                        "{key}[{i}]: ours {} reference {}",
                        describe(p),
                        describe(q)
                    );
                }
            }
            _ => assert_eq!(a, b, "{key}"),
        }
    }
}

fn check_fixture(name: &str, arch: &str) {
    let Some(fx) = fixtures() else { return };
    let ours = convert(&fx.join(name), arch).unwrap();
    for outtype in ["f16", "bf16"] {
        let reference = reference_kvs(&fx.join(format!("reference/{name}.{outtype}.gguf")));
        assert_same(&ours, &reference);
    }
}

#[test]
fn llama_tiny_smollm_bpe_matches_reference() {
    check_fixture("llama-tiny", "llama");
}

#[test]
fn qwen2_tiny_bpe_matches_reference() {
    check_fixture("qwen2-tiny", "qwen2");
}

#[test]
fn llama_spm_tiny_sentencepiece_matches_reference() {
    check_fixture("llama-spm-tiny", "llama");
}

#[test]
fn qwen2_tiny_as_qwen3_is_the_same_tokenizer() {
    let Some(fx) = fixtures() else { return };
    let dir = fx.join("qwen2-tiny");
    let q2 = convert(&dir, "qwen2").unwrap();
    let q3 = convert(&dir, "qwen3").unwrap();
    assert_eq!(q2, q3);
}

// ---- variations built from the fixtures in a temp folder ----

fn copy_fixture(fx: &Path, name: &str, skip: &[&str]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fx.join(name)).unwrap() {
        let entry = entry.unwrap();
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.ends_with(".safetensors") || skip.contains(&file.as_str()) {
            continue;
        }
        std::fs::copy(entry.path(), tmp.path().join(&file)).unwrap();
    }
    tmp
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn write_json(path: &Path, v: &serde_json::Value) {
    std::fs::write(path, serde_json::to_string(v).unwrap()).unwrap();
}

fn get<'a>(kvs: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    kvs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn arr(v: Option<&Value>) -> &[Value] {
    &v.and_then(Value::as_array).unwrap().items
}

#[test]
fn merges_stored_as_pairs_give_the_same_strings() {
    let Some(fx) = fixtures() else { return };
    let tmp = copy_fixture(&fx, "llama-tiny", &[]);
    let tj_path = tmp.path().join("tokenizer.json");
    let mut tj = read_json(&tj_path);
    let merges = tj["model"]["merges"].as_array().unwrap().clone();
    let pairs: Vec<serde_json::Value> = merges
        .iter()
        .map(|m| {
            let (a, b) = m.as_str().unwrap().split_once(' ').unwrap();
            serde_json::json!([a, b])
        })
        .collect();
    tj["model"]["merges"] = serde_json::Value::Array(pairs);
    write_json(&tj_path, &tj);
    let ours = convert(tmp.path(), "llama").unwrap();
    let reference = reference_kvs(&fx.join("reference/llama-tiny.f16.gguf"));
    assert_same(&ours, &reference);
}

#[test]
fn chat_template_jinja_file_is_used_when_the_config_has_none() {
    let Some(fx) = fixtures() else { return };
    let tmp = copy_fixture(&fx, "qwen2-tiny", &[]);
    let tc_path = tmp.path().join("tokenizer_config.json");
    let mut tc = read_json(&tc_path);
    tc.as_object_mut().unwrap().remove("chat_template");
    write_json(&tc_path, &tc);
    std::fs::write(tmp.path().join("chat_template.jinja"), "{{ messages }}").unwrap();
    let ours = convert(tmp.path(), "qwen2").unwrap();
    assert_eq!(
        get(&ours, "tokenizer.chat_template").and_then(Value::as_str),
        Some("{{ messages }}")
    );
}

/// The released Fairy2i-W2 checkpoint (Llama-2-7B layout): tokenizer.model plus a
/// tokenizer_config.json listing `<unk>`, `<s>`, `</s>` in added_tokens_decoder: the three become
/// CONTROL with score −1000 (README, SentencePiece path), everything else as the fixture.
#[test]
fn llama2_layout_with_added_tokens_decoder() {
    let Some(fx) = fixtures() else { return };
    let tmp = copy_fixture(&fx, "llama-spm-tiny", &[]);
    let tc_path = tmp.path().join("tokenizer_config.json");
    let mut tc = read_json(&tc_path);
    let entry = |c: &str| {
        serde_json::json!({"content": c, "lstrip": false, "normalized": false, "rstrip": false,
                           "single_word": false, "special": true})
    };
    tc["added_tokens_decoder"] =
        serde_json::json!({"0": entry("<unk>"), "1": entry("<s>"), "2": entry("</s>")});
    write_json(&tc_path, &tc);
    let ours = convert(tmp.path(), "llama").unwrap();
    let reference = reference_kvs(&fx.join("reference/llama-spm-tiny.f16.gguf"));
    let keys: Vec<&str> = ours.iter().map(|(k, _)| k.as_str()).collect();
    let ref_keys: Vec<&str> = reference.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ref_keys);
    let types = arr(get(&ours, "tokenizer.ggml.token_type"));
    let scores = arr(get(&ours, "tokenizer.ggml.scores"));
    let tokens = arr(get(&ours, "tokenizer.ggml.tokens"));
    let ref_types = arr(get(&reference, "tokenizer.ggml.token_type"));
    let ref_scores = arr(get(&reference, "tokenizer.ggml.scores"));
    for id in 0..3 {
        assert_eq!(types[id], Value::I32(3), "type of {id}");
        assert_eq!(scores[id], Value::F32(-1000.0), "score of {id}");
    }
    assert_eq!(tokens[0].as_str(), Some("<unk>"));
    assert_eq!(
        ref_types[0],
        Value::I32(2),
        "the reference fixture's <unk> is UNKNOWN"
    );
    assert_eq!(types[3..], ref_types[3..]);
    assert_eq!(scores[3..], ref_scores[3..]);
    assert_eq!(
        get(&ours, "tokenizer.ggml.bos_token_id"),
        Some(&Value::U32(1))
    );
    assert_eq!(
        get(&ours, "tokenizer.ggml.add_bos_token"),
        Some(&Value::Bool(true))
    );
}

#[test]
fn added_tokens_json_and_padding_on_the_spm_path() {
    let Some(fx) = fixtures() else { return };
    let tmp = copy_fixture(&fx, "llama-spm-tiny", &[]);
    let cfg_path = tmp.path().join("config.json");
    let mut cfg = read_json(&cfg_path);
    cfg["vocab_size"] = serde_json::json!(3002);
    write_json(&cfg_path, &cfg);
    std::fs::write(
        tmp.path().join("added_tokens.json"),
        r#"{"<extra>": 3000, "<out>": 5000}"#,
    )
    .unwrap();
    let ours = convert(tmp.path(), "llama").unwrap();
    let tokens = arr(get(&ours, "tokenizer.ggml.tokens"));
    let types = arr(get(&ours, "tokenizer.ggml.token_type"));
    let scores = arr(get(&ours, "tokenizer.ggml.scores"));
    assert_eq!(tokens.len(), 3002);
    assert_eq!(tokens[3000].as_str(), Some("<extra>"));
    assert_eq!(
        (&types[3000], &scores[3000]),
        (&Value::I32(4), &Value::F32(-1000.0))
    );
    assert_eq!(tokens[3001].as_str(), Some("[PAD3001]"));
    assert_eq!(
        (&types[3001], &scores[3001]),
        (&Value::I32(5), &Value::F32(-10000.0))
    );
}

#[test]
fn tokenizer_model_wins_over_tokenizer_json() {
    let Some(fx) = fixtures() else { return };
    let tmp = copy_fixture(&fx, "llama-spm-tiny", &[]);
    std::fs::copy(
        fx.join("llama-tiny/tokenizer.json"),
        tmp.path().join("tokenizer.json"),
    )
    .unwrap();
    let ours = convert(tmp.path(), "llama").unwrap();
    assert_eq!(
        get(&ours, "tokenizer.ggml.model").and_then(Value::as_str),
        Some("llama")
    );
    assert!(get(&ours, "tokenizer.ggml.merges").is_none());
}

// ---- bad input ----

type Kvs = Result<Vec<(String, Value)>, TokenizerError>;

/// The error, or a short note instead of the (huge) KV list.
fn short(r: &Kvs) -> String {
    match r {
        Ok(kvs) => format!("Ok({} KVs)", kvs.len()),
        Err(e) => format!("Err({e:?})"),
    }
}

fn err_text(r: Kvs) -> String {
    r.expect_err("expected an error").to_string()
}

fn minimal_config(dir: &Path) {
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "llama", "vocab_size": 8}"#,
    )
    .unwrap();
}

#[test]
fn missing_tokenizer_files_name_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    minimal_config(tmp.path());
    let e = convert(tmp.path(), "llama");
    assert!(
        matches!(e, Err(TokenizerError::NoTokenizer { .. })),
        "{}",
        short(&e)
    );
    let text = err_text(e);
    assert!(text.contains(&tmp.path().display().to_string()), "{text}");
    assert!(
        text.contains("no tokenizer.model or tokenizer.json"),
        "{text}"
    );
}

#[test]
fn invalid_json_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    minimal_config(tmp.path());
    std::fs::write(tmp.path().join("tokenizer.json"), "{ not json").unwrap();
    let e = convert(tmp.path(), "qwen2");
    assert!(
        matches!(e, Err(TokenizerError::Json { .. })),
        "{}",
        short(&e)
    );
    let text = err_text(e);
    assert!(text.contains("tokenizer.json: invalid JSON"), "{text}");

    let tmp = tempfile::tempdir().unwrap();
    minimal_config(tmp.path());
    std::fs::write(tmp.path().join("tokenizer_config.json"), "[1,").unwrap();
    let text = err_text(convert(tmp.path(), "llama"));
    assert!(
        text.contains("tokenizer_config.json: invalid JSON"),
        "{text}"
    );
}

fn tiny_bpe_json() -> serde_json::Value {
    // A byte-level BPE whose check-text hash is in nobody's table.
    serde_json::json!({
        "version": "1.0",
        "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}
    })
}

#[test]
fn unknown_pre_tokenizer_names_the_file_and_hash() {
    let tmp = tempfile::tempdir().unwrap();
    minimal_config(tmp.path());
    write_json(&tmp.path().join("tokenizer.json"), &tiny_bpe_json());
    let e = convert(tmp.path(), "llama");
    let Err(TokenizerError::UnknownPreTokenizer { chkhsh, .. }) = &e else {
        panic!("{}", short(&e))
    };
    assert_eq!(chkhsh.len(), 64);
    let text = err_text(e);
    assert!(
        text.contains("tokenizer.json: unknown pre-tokenizer (chkhsh "),
        "{text}"
    );
}

#[test]
fn vocab_larger_than_config_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("config.json"), r#"{"vocab_size": 2}"#).unwrap();
    write_json(&tmp.path().join("tokenizer.json"), &tiny_bpe_json());
    let text = err_text(convert(tmp.path(), "qwen2"));
    assert!(
        text.contains("token id 2 is not below vocab_size 2"),
        "{text}"
    );
}

#[test]
fn tokenizers_library_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    minimal_config(tmp.path());
    let mut tj = tiny_bpe_json();
    tj["model"]["type"] = serde_json::json!("NoSuchModel");
    write_json(&tmp.path().join("tokenizer.json"), &tj);
    let e = convert(tmp.path(), "qwen2");
    assert!(
        matches!(e, Err(TokenizerError::Tokenizers { .. })),
        "{}",
        short(&e)
    );
    assert!(err_text(e).contains("tokenizer.json: "));
}

#[test]
fn truncated_tokenizer_model_is_rejected() {
    let Some(fx) = fixtures() else { return };
    let tmp = copy_fixture(&fx, "llama-spm-tiny", &["tokenizer.model"]);
    let model = std::fs::read(fx.join("llama-spm-tiny/tokenizer.model")).unwrap();
    // Cut inside the first piece message (tag 0x0a, one-byte length).
    assert_eq!(model[0], 0x0a);
    let cut = 2 + usize::from(model[1]) - 1;
    std::fs::write(tmp.path().join("tokenizer.model"), &model[..cut]).unwrap();
    let e = convert(tmp.path(), "llama");
    assert!(
        matches!(e, Err(TokenizerError::Protobuf { .. })),
        "{}",
        short(&e)
    );
    assert!(err_text(e).contains("tokenizer.model: bad SentencePiece model at byte "));
}

#[test]
fn llama2_style_tokenizer_json_without_model_is_unsupported() {
    let tmp = tempfile::tempdir().unwrap();
    minimal_config(tmp.path());
    let mut tj = tiny_bpe_json();
    tj["model"]["byte_fallback"] = serde_json::json!(true);
    tj["decoder"] = serde_json::json!({"type": "Sequence", "decoders": []});
    write_json(&tmp.path().join("tokenizer.json"), &tj);
    let e = convert(tmp.path(), "llama");
    assert!(
        matches!(e, Err(TokenizerError::Unsupported { .. })),
        "{}",
        short(&e)
    );
}

#[test]
fn unknown_arch_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    minimal_config(tmp.path());
    let e = convert(tmp.path(), "gpt2");
    assert!(
        matches!(e, Err(TokenizerError::UnknownArch { .. })),
        "{}",
        short(&e)
    );
}
