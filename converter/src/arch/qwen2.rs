//! `qwen2`: Qwen2 / Qwen2.5 (q/k/v biases, no Q/K permutation, no `head_dim` key unless config.json
//! has one).

/// `architectures[0]` values converted as `qwen2`.
pub const HF_ARCHITECTURES: &[&str] = &["Qwen2ForCausalLM"];
