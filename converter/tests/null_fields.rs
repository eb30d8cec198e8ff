//! Issue 15 §1: `config.json` fields set to `null` (transformers ≥ 4.57 writes `"head_dim": null`,
//! `"sliding_window": null`, …) are converted as llama.cpp's own converter converts them.
//!
//! The reference is independent of this code: `tests/data/null-fields/make.py` built tiny
//! random-weight checkpoints (llama, mistral, qwen2, qwen3) and one `config.json` per case, and ran
//! llama.cpp b11434's `convert_hf_to_gguf.py --outtype bf16` on each; what it wrote is
//! `tests/data/null-fields/reference/<case>.gguf`, what it did is recorded in `cases.json`. The
//! command and versions are in `tests/data/null-fields/README.md`:
//!
//!     python make.py <llama.cpp b11434 source>   # in tests/data/null-fields, with torch 2.11.0,
//!                                                # transformers 4.57.6, numpy 2.2.6,
//!                                                # sentencepiece 0.2.3, safetensors 0.8.0
//!
//! Every case where the reference wrote a file llama.cpp can load must come out byte-identical
//! (the case folder has the same name, so even `general.name` matches). The cases in [`REFUSED`]
//! are those where the reference fails, or writes a file that llama.cpp b11434 refuses to load (a
//! key it needs is left out, or a key contradicts the tensors; checked by loading each reference
//! file with `llama-completion`, see the README there): fairy2i refuses them with one error naming
//! the field. For each, the table says what the reference did, and the test checks that against
//! the reference's output.

mod common;

use std::path::{Path, PathBuf};

use fairy2i_format::gguf::{MappedGguf, Value};
use serde_json::Value as Json;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/null-fields")
}

/// What llama.cpp's converter did with a case fairy2i refuses.
#[derive(Debug)]
enum Reference {
    /// It failed (no file).
    Failed,
    /// It wrote a file without this key, which llama.cpp b11434 needs to load the model (or to
    /// size its tensors).
    Lacks(&'static str),
    /// It wrote this u32 key with a value the tensors contradict.
    Contradicts(&'static str, u32),
    /// It wrote a loadable file: `vocab_size: null` for a qwen model, where it takes the size of a
    /// SentencePiece tokenizer (a qwen BPE tokenizer, as every real Qwen model has, makes it fail).
    /// fairy2i needs the vocabulary size for the tensor shapes and refuses: the one case where it
    /// does not follow the reference.
    Loadable,
}

/// Cases fairy2i refuses: (case, text the error must contain, what the reference did).
const REFUSED: &[(&str, &str, Reference)] = &[
    (
        "llama-num-hidden-layers-null",
        "field 'num_hidden_layers' is null",
        Reference::Failed,
    ),
    (
        "llama-hidden-size-null",
        "field 'hidden_size' is null",
        Reference::Failed,
    ),
    (
        "llama-num-attention-heads-null",
        "field 'num_attention_heads' is null",
        Reference::Failed,
    ),
    (
        "llama-intermediate-size-null",
        "field 'intermediate_size' is null",
        Reference::Lacks("llama.feed_forward_length"),
    ),
    (
        "llama-vocab-size-null",
        "field 'vocab_size' is null",
        Reference::Failed,
    ),
    (
        "llama-text-config-null",
        "field 'text_config' is null",
        Reference::Failed,
    ),
    (
        "llama-architectures-null",
        "field 'architectures' is null",
        Reference::Failed,
    ),
    (
        "mistral-num-hidden-layers-null",
        "field 'num_hidden_layers' is null",
        Reference::Failed,
    ),
    (
        "mistral-hidden-size-null",
        "field 'hidden_size' is null",
        Reference::Failed,
    ),
    (
        "mistral-num-attention-heads-null",
        "field 'num_attention_heads' is null",
        Reference::Failed,
    ),
    (
        "mistral-intermediate-size-null",
        "field 'intermediate_size' is null",
        Reference::Lacks("llama.feed_forward_length"),
    ),
    (
        "mistral-vocab-size-null",
        "field 'vocab_size' is null",
        Reference::Failed,
    ),
    (
        "mistral-text-config-null",
        "field 'text_config' is null",
        Reference::Failed,
    ),
    (
        "mistral-architectures-null",
        "field 'architectures' is null",
        Reference::Failed,
    ),
    (
        "qwen2-num-hidden-layers-null",
        "field 'num_hidden_layers' is null",
        Reference::Failed,
    ),
    (
        "qwen2-hidden-size-null",
        "field 'hidden_size' is null",
        Reference::Lacks("qwen2.embedding_length"),
    ),
    (
        "qwen2-num-attention-heads-null",
        "field 'num_attention_heads' is null",
        Reference::Lacks("qwen2.attention.head_count"),
    ),
    (
        "qwen2-intermediate-size-null",
        "field 'intermediate_size' is null",
        Reference::Lacks("qwen2.feed_forward_length"),
    ),
    (
        "qwen2-vocab-size-null",
        "field 'vocab_size' is null",
        Reference::Loadable,
    ),
    (
        "qwen2-text-config-null",
        "field 'text_config' is null",
        Reference::Failed,
    ),
    (
        "qwen2-architectures-null",
        "field 'architectures' is null",
        Reference::Failed,
    ),
    (
        "qwen3-num-hidden-layers-null",
        "field 'num_hidden_layers' is null",
        Reference::Failed,
    ),
    (
        "qwen3-hidden-size-null",
        "field 'hidden_size' is null",
        Reference::Lacks("qwen3.embedding_length"),
    ),
    (
        "qwen3-num-attention-heads-null",
        "field 'num_attention_heads' is null",
        Reference::Lacks("qwen3.attention.head_count"),
    ),
    (
        "qwen3-intermediate-size-null",
        "field 'intermediate_size' is null",
        Reference::Lacks("qwen3.feed_forward_length"),
    ),
    (
        "qwen3-vocab-size-null",
        "field 'vocab_size' is null",
        Reference::Loadable,
    ),
    (
        "qwen3-text-config-null",
        "field 'text_config' is null",
        Reference::Failed,
    ),
    (
        "qwen3-architectures-null",
        "field 'architectures' is null",
        Reference::Failed,
    ),
    // A null max_position_embeddings hides n_ctx (find_hparam takes the first key present), a
    // null rms_norm_eps hides norm_eps: the reference leaves out keys llama.cpp needs.
    (
        "llama-max-position-embeddings-null",
        "field 'max_position_embeddings' is null",
        Reference::Lacks("llama.context_length"),
    ),
    (
        "qwen2-max-position-embeddings-null",
        "field 'max_position_embeddings' is null",
        Reference::Lacks("qwen2.context_length"),
    ),
    (
        "llama-rms-norm-eps-null",
        "field 'rms_norm_eps' is null",
        Reference::Lacks("llama.attention.layer_norm_rms_epsilon"),
    ),
    // The llama class lowercases rope_type; LlamaConfig replaces a null one by a legacy "type",
    // MistralConfig does not.
    (
        "llama-rope-type-null",
        "field 'rope_scaling.rope_type' is null",
        Reference::Failed,
    ),
    (
        "mistral-rope-type-null-legacy-type",
        "field 'rope_scaling.rope_type' is null",
        Reference::Failed,
    ),
    // Qwen3Config's head_dim default (128) when the key is missing; the q_norm tensors are 8 long.
    (
        "qwen3-head-dim-missing",
        "config.json implies [128]",
        Reference::Contradicts("qwen3.attention.key_length", 128),
    ),
    // Qwen2Config's num_key_value_heads default (32) when the key is missing.
    (
        "qwen2-kv-heads-missing",
        "field 'num_key_value_heads' does not divide",
        Reference::Contradicts("qwen2.attention.head_count_kv", 32),
    ),
    // A null num_key_value_heads is num_attention_heads (2); the checkpoint has one KV head.
    (
        "llama-kv-heads-null-gqa-weights",
        "config.json implies [16, 16]",
        Reference::Contradicts("llama.attention.head_count_kv", 2),
    ),
];

struct Case {
    name: String,
    weights: String,
    config: Json,
    generation_config: Json,
    reference: String,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read(data().join("cases.json")).expect("cases.json");
    let json: Json = serde_json::from_slice(&text).expect("cases.json parses");
    let field = |c: &Json, k: &str| c.get(k).cloned().unwrap_or(Json::Null);
    json.as_array()
        .expect("a list of cases")
        .iter()
        .map(|c| Case {
            name: field(c, "name").as_str().expect("name").to_string(),
            weights: field(c, "weights").as_str().expect("weights").to_string(),
            config: field(c, "config"),
            generation_config: field(c, "generation_config"),
            reference: field(c, "reference")
                .as_str()
                .expect("reference")
                .to_string(),
        })
        .collect()
}

/// The case's Hugging Face folder, under the case's own name.
fn folder(case: &Case, parent: &Path) -> PathBuf {
    let dir = parent.join(&case.name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let d = data();
    let copy = |from: PathBuf, to: &str| {
        std::fs::copy(&from, dir.join(to)).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    };
    copy(
        d.join("weights")
            .join(format!("{}.safetensors", case.weights)),
        "model.safetensors",
    );
    copy(d.join("tokenizer.model"), "tokenizer.model");
    copy(d.join("tokenizer_config.json"), "tokenizer_config.json");
    let write = |name: &str, v: &Json| {
        std::fs::write(
            dir.join(name),
            serde_json::to_string_pretty(v).expect("json"),
        )
        .expect("write");
    };
    write("config.json", &case.config);
    if !case.generation_config.is_null() {
        write("generation_config.json", &case.generation_config);
    }
    dir
}

fn convert(dir: &Path, out: &Path) -> std::process::Output {
    common::run(&[
        "convert".as_ref(),
        dir.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--type".as_ref(),
        "bf16".as_ref(),
        "-q".as_ref(),
    ])
}

/// The KVs of a GGUF as (key, rendering), for messages.
fn kvs(path: &Path) -> Vec<(String, String)> {
    let map = MappedGguf::open(path).expect("open");
    let g = map.parse().expect("parse");
    g.metadata
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                format!("{:?} {}", v.value_type(), v.summary(4)),
            )
        })
        .collect()
}

/// The cases whose output must equal the reference byte for byte, and the claims of [`REFUSED`].
#[test]
fn null_fields_convert_as_llama_cpp_converts_them() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    let mut identical = 0;
    let all = cases();
    for (name, _, _) in REFUSED {
        assert!(
            all.iter().any(|c| c.name == *name),
            "{name} is not in cases.json"
        );
    }
    for case in &all {
        let reference = data().join("reference").join(format!("{}.gguf", case.name));
        let dir = folder(case, tmp.path());
        let out = tmp.path().join(format!("{}.out.gguf", case.name));
        let o = convert(&dir, &out);
        let stderr = String::from_utf8_lossy(&o.stderr).trim().to_string();
        if let Some((_, error, what)) = REFUSED.iter().find(|(n, _, _)| *n == case.name) {
            // Refused: one error naming the field and the file, no output.
            if o.status.success() || !stderr.contains(error) || !stderr.contains("config.json") {
                failures.push(format!(
                    "{}: expected an error containing {error:?}, got exit {:?}: {stderr}",
                    case.name,
                    o.status.code()
                ));
            }
            if out.exists() {
                failures.push(format!(
                    "{}: a refused conversion left {}",
                    case.name,
                    out.display()
                ));
            }
            // What the table says the reference did.
            let reference_wrote = case.reference.starts_with("wrote");
            assert_eq!(
                reference_wrote,
                reference.exists(),
                "{}: cases.json vs reference/",
                case.name
            );
            let ok = match what {
                Reference::Failed => !reference_wrote,
                Reference::Loadable => reference_wrote,
                Reference::Lacks(key) => {
                    reference_wrote && kvs(&reference).iter().all(|(k, _)| k != key)
                }
                Reference::Contradicts(key, value) => {
                    reference_wrote && {
                        let map = MappedGguf::open(&reference).expect("open");
                        let g = map.parse().expect("parse");
                        g.metadata.get(key) == Some(&Value::U32(*value))
                    }
                }
            };
            if !ok {
                failures.push(format!(
                    "{}: the reference did not do what the table says ({what:?}): {}",
                    case.name, case.reference
                ));
            }
            continue;
        }
        if !reference.exists() {
            failures.push(format!(
                "{}: no reference file ({}) and not in REFUSED",
                case.name, case.reference
            ));
            continue;
        }
        if !o.status.success() {
            failures.push(format!("{}: convert failed: {stderr}", case.name));
            continue;
        }
        let (a, b) = (
            std::fs::read(&reference).expect("reference"),
            std::fs::read(&out).expect("output"),
        );
        if a == b {
            identical += 1;
            continue;
        }
        let (ka, kb) = (kvs(&reference), kvs(&out));
        let only_ref: Vec<_> = ka.iter().filter(|x| !kb.contains(x)).collect();
        let only_ours: Vec<_> = kb.iter().filter(|x| !ka.contains(x)).collect();
        failures.push(format!(
            "{}: differs from the reference\n  reference only: {only_ref:?}\n  ours only: {only_ours:?}",
            case.name
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(identical >= 20, "only {identical} byte-identical cases");
}

/// The defect that opened the issue, spelled out: a Mistral config with `"head_dim": null` (and one
/// without the key) gets no key_length/value_length (MistralConfig keeps `head_dim` None), while
/// Llama's class fills `head_dim` in, so the llama case keeps them.
#[test]
fn head_dim_null_writes_key_length_only_where_the_config_class_fills_it() {
    let keys = |case: &str| -> Vec<String> {
        kvs(&data().join("reference").join(format!("{case}.gguf")))
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    for (case, arch, has) in [
        ("mistral-head-dim-null", "llama", false),
        ("mistral-head-dim-missing", "llama", false),
        ("llama-head-dim-null", "llama", true),
        ("qwen2-head-dim-null", "qwen2", false),
        ("qwen3-head-dim-null", "qwen3", false),
        ("qwen3-kv-heads-null", "qwen3", true),
    ] {
        let k = keys(case);
        for key in ["attention.key_length", "attention.value_length"] {
            assert_eq!(
                k.contains(&format!("{arch}.{key}")),
                has,
                "{case}: {arch}.{key} in the reference"
            );
        }
    }
}
