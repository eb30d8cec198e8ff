//! `qwen3`: Qwen3 dense models (per-head q_norm/k_norm, `head_dim` from config.json, default 128).

/// `architectures[0]` values converted as `qwen3`.
pub const HF_ARCHITECTURES: &[&str] = &["Qwen3ForCausalLM"];
