//! `llama`: Llama and Mistral checkpoints (MistralConfig, unlike LlamaConfig, leaves `head_dim`
//! unset, so a Mistral file has no key_length unless config.json gives a number). llama.cpp stores
//! the rows of attn_q/attn_k permuted per head (interleaved rope halves): inside each head, output
//! row `2*i + j` is input row `j*(head_dim/2) + i`.

use fairy2i_format::gguf::Value;

use crate::error::Result;
use crate::hf::config::HfConfig;

/// `architectures[0]` values converted as `llama`.
pub const HF_ARCHITECTURES: &[&str] = &["LlamaForCausalLM", "MistralForCausalLM"];

/// The KVs the llama class adds after `general.file_type`.
pub fn extra_kvs(cfg: &HfConfig) -> Result<Vec<(String, Value)>> {
    let vocab = cfg.u64("vocab_size")?;
    let rope_dim = match cfg.head_dim()? {
        Some(h) => h,
        None => cfg.u64("hidden_size")? / cfg.u64("num_attention_heads")?,
    };
    let to_u32 = |field: &str, v: u64| {
        u32::try_from(v).map_err(|_| cfg.field_error(field, "does not fit in u32"))
    };
    Ok(vec![
        (
            "llama.vocab_size".into(),
            Value::U32(to_u32("vocab_size", vocab)?),
        ),
        (
            "llama.rope.dimension_count".into(),
            Value::U32(to_u32("head_dim", rope_dim)?),
        ),
    ])
}

/// The row permutation llama.cpp applies to attn_q (with `n_head`) and attn_k (with `n_head_kv`):
/// new row `r` takes old row `perm[r]`. `None` when `n_rows` is not a whole number of heads of even size.
/// (One implementation, in `format::permute`; the quantizer's tests check it commutes with F2I pairing.)
pub fn qk_permutation(n_rows: usize, n_head: usize) -> Option<Vec<usize>> {
    fairy2i_format::permute::llama_qk_permutation(n_rows, n_head).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_dim_8_interleaves_the_halves() {
        let p = qk_permutation(16, 2).unwrap();
        assert_eq!(p, [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]);
        assert!(qk_permutation(12, 4).is_none());
    }
}
