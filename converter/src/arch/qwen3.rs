//! `qwen3`: Qwen3 dense models (per-head q_norm/k_norm, `head_dim` from config.json, default 128 when
//! missing; a null one writes no key_length and the heads are hidden_size / num_attention_heads).

/// `architectures[0]` values converted as `qwen3`.
pub const HF_ARCHITECTURES: &[&str] = &["Qwen3ForCausalLM"];
