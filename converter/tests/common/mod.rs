//! Shared helpers of the converter's end-to-end tests: the real binary, the shared fixtures, and
//! synthetic checkpoints the tests write themselves ([`Synth`]).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../../../tests/src/fixtures.rs"]
pub mod fixtures;

/// The `fairy2i` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fairy2i"))
}

/// Runs the binary with `args`.
pub fn run(args: &[&std::ffi::OsStr]) -> Output {
    bin().args(args).output().expect("the fairy2i binary runs")
}

/// The shared fixtures folder (`<shared>/fixtures`, see [`fixtures::shared_dir`]), or `None` after
/// [`fixtures::skip`] (a failure with `FAIRY2I_REQUIRE_FIXTURES=1`).
pub fn fixtures() -> Option<PathBuf> {
    let dir = fixtures::shared_dir().join("fixtures");
    if dir.join("reference").is_dir() {
        return Some(dir);
    }
    fixtures::skip(
        &fixtures::test_name(),
        &format!(
            "the converter fixtures are absent: no {} (set FAIRY2I_SHARED)",
            dir.join("reference").display()
        ),
    );
    None
}

/// Copies the folder `src` into `dst_parent`, keeping its name; returns the copy.
pub fn copy_dir(src: &Path, dst_parent: &Path) -> PathBuf {
    let dst = dst_parent.join(src.file_name().expect("a named folder"));
    std::fs::create_dir_all(&dst).expect("create the copy");
    for entry in std::fs::read_dir(src).expect("read the fixture folder") {
        let entry = entry.expect("a folder entry");
        std::fs::copy(entry.path(), dst.join(entry.file_name())).expect("copy a fixture file");
    }
    dst
}

/// The names of the entries of `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Hidden size of a [`Synth`] checkpoint: the row length K of most of its matrices.
pub const SYNTH_HIDDEN: usize = 256;
/// `intermediate_size` of a [`Synth`] checkpoint.
pub const SYNTH_FF: usize = 512;
/// `vocab_size` of a [`Synth`] checkpoint.
pub const SYNTH_VOCAB: usize = 64;

/// A small f32 Hugging Face checkpoint written by the test itself (no `../shared` needed): one layer,
/// hidden size 256 (so the matrices can be F2I), deterministic pseudo-random weights, no tokenizer
/// (convert it with `--no-tokenizer`).
pub struct Synth {
    /// `architectures[0]`: `LlamaForCausalLM` or `Qwen2ForCausalLM`.
    pub arch: &'static str,
    /// `num_attention_heads`.
    pub n_head: usize,
    /// `num_key_value_heads`.
    pub n_head_kv: usize,
    /// `tie_word_embeddings` (then no `lm_head.weight`).
    pub tied: bool,
    /// 1: one `model.safetensors`; more: `model-0000i-of-0000n.safetensors` files and
    /// `model.safetensors.index.json`, the tensors in declaration order split into `shards` runs.
    pub shards: usize,
}

impl Synth {
    /// An untied single-file checkpoint.
    pub fn new(arch: &'static str, n_head: usize, n_head_kv: usize) -> Synth {
        Synth {
            arch,
            n_head,
            n_head_kv,
            tied: false,
            shards: 1,
        }
    }

    /// With tied embeddings.
    pub fn tied(mut self) -> Synth {
        self.tied = true;
        self
    }

    /// Split into `n` shards with an index.
    pub fn sharded(mut self, n: usize) -> Synth {
        self.shards = n;
        self
    }

    /// The shard file names, in order.
    pub fn shard_names(&self) -> Vec<String> {
        if self.shards <= 1 {
            return vec!["model.safetensors".into()];
        }
        (1..=self.shards)
            .map(|i| format!("model-{i:05}-of-{:05}.safetensors", self.shards))
            .collect()
    }

    /// The tensors (Hugging Face names and PyTorch shapes), in declaration order.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (hidden, ff, vocab) = (SYNTH_HIDDEN, SYNTH_FF, SYNTH_VOCAB);
        let hd = hidden / self.n_head;
        let (n_head, n_head_kv) = (self.n_head, self.n_head_kv);
        let mut tensors: Vec<(String, Vec<usize>)> = vec![
            ("model.embed_tokens.weight".into(), vec![vocab, hidden]),
            ("model.norm.weight".into(), vec![hidden]),
            ("model.layers.0.input_layernorm.weight".into(), vec![hidden]),
            (
                "model.layers.0.post_attention_layernorm.weight".into(),
                vec![hidden],
            ),
            (
                "model.layers.0.self_attn.q_proj.weight".into(),
                vec![n_head * hd, hidden],
            ),
            (
                "model.layers.0.self_attn.k_proj.weight".into(),
                vec![n_head_kv * hd, hidden],
            ),
            (
                "model.layers.0.self_attn.v_proj.weight".into(),
                vec![n_head_kv * hd, hidden],
            ),
            (
                "model.layers.0.self_attn.o_proj.weight".into(),
                vec![hidden, n_head * hd],
            ),
            (
                "model.layers.0.mlp.gate_proj.weight".into(),
                vec![ff, hidden],
            ),
            ("model.layers.0.mlp.up_proj.weight".into(), vec![ff, hidden]),
            (
                "model.layers.0.mlp.down_proj.weight".into(),
                vec![hidden, ff],
            ),
        ];
        if !self.tied {
            tensors.push(("lm_head.weight".into(), vec![vocab, hidden]));
        }
        tensors
    }

    /// Writes `config.json` and the weights into `dir` (created if needed).
    pub fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).expect("mkdir");
        let config = serde_json::json!({
            "architectures": [self.arch],
            "model_type": if self.arch == "LlamaForCausalLM" { "llama" } else { "qwen2" },
            "hidden_size": SYNTH_HIDDEN, "intermediate_size": SYNTH_FF, "num_hidden_layers": 1,
            "num_attention_heads": self.n_head, "num_key_value_heads": self.n_head_kv,
            "vocab_size": SYNTH_VOCAB, "max_position_embeddings": 1024, "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0, "tie_word_embeddings": self.tied,
        });
        std::fs::write(dir.join("config.json"), config.to_string()).expect("config");
        // Deterministic pseudo-random values (xorshift), roughly N(0, 0.02)-sized.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.07
        };
        let data: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors()
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let bytes: Vec<u8> = (0..n).flat_map(|_| next().to_le_bytes()).collect();
                (name, shape, bytes)
            })
            .collect();
        let names = self.shard_names();
        let per_shard = data.len().div_ceil(names.len());
        let mut weight_map = serde_json::Map::new();
        for (file, chunk) in names.iter().zip(data.chunks(per_shard)) {
            let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = chunk
                .iter()
                .map(|(n, s, b)| {
                    let v =
                        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                            .expect("view");
                    weight_map.insert(n.clone(), serde_json::Value::from(file.as_str()));
                    (n.clone(), v)
                })
                .collect();
            safetensors::serialize_to_file(views, &None, &dir.join(file))
                .expect("write safetensors");
        }
        if names.len() > 1 {
            let total: usize = data.iter().map(|(_, _, b)| b.len()).sum();
            let index = serde_json::json!({
                "metadata": {"total_size": total},
                "weight_map": weight_map,
            });
            std::fs::write(dir.join("model.safetensors.index.json"), index.to_string())
                .expect("index");
        }
    }
}
