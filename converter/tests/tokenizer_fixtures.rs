//! The tokenizer module against the GGUFs written by llama.cpp b11434's own
//! `convert_hf_to_gguf.py` (shared/fixtures/reference), plus bad-input cases.
//!
//! Fixtures: `$FAIRY2I_SHARED/fixtures`, else `<workspace>/../shared/fixtures`. When absent the
//! fixture tests print `SKIPPED: …` and pass, unless `FAIRY2I_REQUIRE_FIXTURES=1` (`common::fixtures`).

mod common;

// Until the converter declares `mod hf;`, the module is compiled here directly.
#[path = "../src/hf/tokenizer/mod.rs"]
#[allow(dead_code)]
mod tokenizer;

use std::path::Path;

use fairy2i_format::gguf::{MappedGguf, Value};
use tokenizer::{tokenizer_kvs, TokenizerError, TokenizerInput};

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
    let Some(fx) = common::fixtures() else { return };
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
    let Some(fx) = common::fixtures() else { return };
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
    let Some(fx) = common::fixtures() else { return };
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
    let Some(fx) = common::fixtures() else { return };
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
    let Some(fx) = common::fixtures() else { return };
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
    let Some(fx) = common::fixtures() else { return };
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
    let Some(fx) = common::fixtures() else { return };
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

// ---- variations checked against the reference converter ----
// Expected values below come from running llama.cpp b11434's own `set_vocab` (transformers 4.57.6,
// tokenizers 0.22.2, gguf-py 0.19.0) on the same modified folders.

fn keys(kvs: &[(String, Value)]) -> Vec<&str> {
    kvs.iter().map(|(k, _)| k.as_str()).collect()
}

fn u32_of(kvs: &[(String, Value)], key: &str) -> Option<u32> {
    match get(kvs, key) {
        Some(Value::U32(v)) => Some(*v),
        _ => None,
    }
}

#[test]
fn legacy_special_tokens_map_makes_additional_specials_control() {
    let Some(fx) = common::fixtures() else { return };
    let tmp = copy_fixture(&fx, "qwen2-tiny", &[]);
    let tc_path = tmp.path().join("tokenizer_config.json");
    let mut tc = read_json(&tc_path);
    tc.as_object_mut().unwrap().remove("added_tokens_decoder");
    write_json(&tc_path, &tc);
    write_json(
        &tmp.path().join("special_tokens_map.json"),
        &serde_json::json!({"additional_special_tokens": ["<|im_start|>", "<tool_call>"]}),
    );
    let ours = convert(tmp.path(), "qwen2").unwrap();
    let types = arr(get(&ours, "tokenizer.ggml.token_type"));
    assert_eq!(types[151657], Value::I32(3), "<tool_call> becomes CONTROL");
    assert_eq!(
        types[151658],
        Value::I32(4),
        "</tool_call> stays USER_DEFINED"
    );
}

#[test]
fn new_added_tokens_take_ids_and_types_as_transformers_assigns_them() {
    let Some(fx) = common::fixtures() else { return };
    let tmp = copy_fixture(&fx, "qwen2-tiny", &[]);
    let tj_path = tmp.path().join("tokenizer.json");
    let tc_path = tmp.path().join("tokenizer_config.json");
    let (mut tj, mut tc) = (read_json(&tj_path), read_json(&tc_path));
    let new = [
        ("\u{2581}hello world", false, false),
        ("\u{120}foo", false, false), // already a vocab token: keeps its id
        ("<unused7>", false, true),
        ("<pad>", false, false),
        ("ABC", true, false), // already a vocab token
        ("zz top", false, true),
    ];
    for (i, (content, normalized, special)) in new.iter().enumerate() {
        let e = serde_json::json!({"id": 151665 + i, "content": content, "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": normalized, "special": special});
        tj["added_tokens"].as_array_mut().unwrap().push(e.clone());
        let mut entry = e.clone();
        entry.as_object_mut().unwrap().remove("id");
        tc["added_tokens_decoder"][(151665 + i).to_string()] = entry;
    }
    write_json(&tj_path, &tj);
    write_json(&tc_path, &tc);
    let ours = convert(tmp.path(), "qwen2").unwrap();
    let tokens = arr(get(&ours, "tokenizer.ggml.tokens"));
    let types = arr(get(&ours, "tokenizer.ggml.token_type"));
    let got: Vec<(&str, &Value)> = (151665..151671)
        .map(|i| (tokens[i].as_str().unwrap(), &types[i]))
        .collect();
    let want = [
        (" hello world", 4),
        ("<unused7>", 3),
        ("<pad>", 3),
        ("zz top", 3),
        ("[PAD151669]", 5),
        ("[PAD151670]", 5),
    ];
    let want: Vec<(&str, Value)> = want.iter().map(|(t, ty)| (*t, Value::I32(*ty))).collect();
    let want: Vec<(&str, &Value)> = want.iter().map(|(t, v)| (*t, v)).collect();
    assert_eq!(got, want);
}

/// `[{"SpecialToken": …}, {"Sequence": …}]` template pieces.
fn tmpl(pieces: &[&str]) -> serde_json::Value {
    serde_json::Value::Array(
        pieces
            .iter()
            .map(|p| match *p {
                "A" | "B" => serde_json::json!({"Sequence": {"id": p, "type_id": 0}}),
                t => serde_json::json!({"SpecialToken": {"id": t, "type_id": 0}}),
            })
            .collect(),
    )
}

/// A tokenizer.json beside tokenizer.model: only its added tokens and post-processor are read.
fn spm_with_tokenizer_json(fx: &Path, post_processor: serde_json::Value) -> tempfile::TempDir {
    let tmp = copy_fixture(fx, "llama-spm-tiny", &[]);
    let added: Vec<serde_json::Value> = ["<unk>", "<s>", "</s>"]
        .iter()
        .enumerate()
        .map(|(i, c)| {
            serde_json::json!({"id": i, "content": c, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    write_json(
        &tmp.path().join("tokenizer.json"),
        &serde_json::json!({"version": "1.0", "added_tokens": added, "normalizer": null,
            "pre_tokenizer": null, "post_processor": post_processor, "decoder": null,
            "model": {"type": "BPE", "vocab": {}, "merges": []}}),
    );
    tmp
}

#[test]
fn llama2_tokenizer_json_beside_the_model_resolves_ids_and_add_sep() {
    let Some(fx) = common::fixtures() else { return };
    let pp = serde_json::json!({"type": "TemplateProcessing", "single": tmpl(&["<s>", "A"]),
        "pair": tmpl(&["<s>", "A", "<s>", "B"])});
    let tmp = spm_with_tokenizer_json(&fx, pp);
    let ours = convert(tmp.path(), "llama").unwrap();
    assert_eq!(
        keys(&ours),
        [
            "tokenizer.ggml.model",
            "tokenizer.ggml.pre",
            "tokenizer.ggml.tokens",
            "tokenizer.ggml.scores",
            "tokenizer.ggml.token_type",
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.unknown_token_id",
            "tokenizer.ggml.add_bos_token",
            "tokenizer.ggml.add_sep_token",
            "tokenizer.ggml.add_eos_token",
            "tokenizer.chat_template",
        ]
    );
    assert_eq!(u32_of(&ours, "tokenizer.ggml.unknown_token_id"), Some(0));
    assert_eq!(
        get(&ours, "tokenizer.ggml.add_sep_token"),
        Some(&Value::Bool(false))
    );
}

#[test]
fn template_with_another_trailing_token_moves_eos_to_eot() {
    let Some(fx) = common::fixtures() else { return };
    let pp = serde_json::json!({"type": "TemplateProcessing", "single": tmpl(&["<s>", "A", "<unk>"]),
        "pair": tmpl(&["A", "</s>", "B"])});
    let tmp = spm_with_tokenizer_json(&fx, pp);
    let tc_path = tmp.path().join("tokenizer_config.json");
    let mut tc = read_json(&tc_path);
    tc["eos_token"] = serde_json::json!("</s>");
    write_json(&tc_path, &tc);
    let ours = convert(tmp.path(), "llama").unwrap();
    assert_eq!(u32_of(&ours, "tokenizer.ggml.eos_token_id"), Some(0));
    assert_eq!(u32_of(&ours, "tokenizer.ggml.eot_token_id"), Some(2));
    assert_eq!(
        get(&ours, "tokenizer.ggml.add_eos_token"),
        Some(&Value::Bool(true))
    );
    let k = keys(&ours);
    let pos = |key: &str| k.iter().position(|x| *x == key).unwrap();
    assert!(pos("tokenizer.ggml.eot_token_id") < pos("tokenizer.ggml.add_bos_token"));
}

#[test]
fn codellama_vocab_size_adds_the_eot_id_last() {
    let Some(fx) = common::fixtures() else { return };
    let tmp = spm_with_tokenizer_json(&fx, serde_json::Value::Null);
    let cfg_path = tmp.path().join("config.json");
    let mut cfg = read_json(&cfg_path);
    cfg["vocab_size"] = serde_json::json!(32016);
    write_json(&cfg_path, &cfg);
    let tc_path = tmp.path().join("tokenizer_config.json");
    let mut tc = read_json(&tc_path);
    tc["eot_token"] = serde_json::json!("</s>");
    write_json(&tc_path, &tc);
    let ours = convert(tmp.path(), "llama").unwrap();
    assert_eq!(arr(get(&ours, "tokenizer.ggml.tokens")).len(), 32016);
    assert_eq!(
        ours.last().map(|(k, _)| k.as_str()),
        Some("tokenizer.ggml.eot_token_id")
    );
    assert_eq!(u32_of(&ours, "tokenizer.ggml.eot_token_id"), Some(2));
}

#[test]
fn named_chat_templates_sep_and_mask_ids() {
    let Some(fx) = common::fixtures() else { return };
    let pp = serde_json::json!({"type": "Sequence", "processors": [{"type": "ByteLevel"},
        {"type": "TemplateProcessing", "single": tmpl(&["<s>", "A"]), "pair": tmpl(&["<s>", "A", "</s>", "B"])}]});
    let tmp = spm_with_tokenizer_json(&fx, pp);
    let tc_path = tmp.path().join("tokenizer_config.json");
    let mut tc = read_json(&tc_path);
    tc["add_eos_token"] = serde_json::json!(true);
    tc["sep_token"] = serde_json::json!("</s>");
    tc["cls_token"] = serde_json::json!({"content": "<s>"});
    tc["mask_token"] = serde_json::json!("<unk>");
    tc["chat_template"] = serde_json::json!([{"name": "default", "template": "D"},
        {"name": "rag stuff", "template": "R"}]);
    write_json(&tc_path, &tc);
    let ours = convert(tmp.path(), "llama").unwrap();
    assert_eq!(
        keys(&ours)[5..],
        [
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.unknown_token_id",
            "tokenizer.ggml.seperator_token_id",
            "tokenizer.ggml.mask_token_id",
            "tokenizer.ggml.add_bos_token",
            "tokenizer.ggml.add_eos_token",
            "tokenizer.ggml.add_sep_token",
            "tokenizer.chat_template.rag_stuff",
            "tokenizer.chat_templates",
            "tokenizer.chat_template",
        ]
    );
    // bos_token and cls_token are dicts here, which the template's leading "<s>" never equals
    // in the reference's comparison: add_bos false.
    assert_eq!(
        get(&ours, "tokenizer.ggml.add_bos_token"),
        Some(&Value::Bool(false))
    );
    assert_eq!(
        get(&ours, "tokenizer.ggml.add_sep_token"),
        Some(&Value::Bool(true))
    );
    assert_eq!(
        get(&ours, "tokenizer.chat_template").and_then(Value::as_str),
        Some("D")
    );
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
    let Some(fx) = common::fixtures() else { return };
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
