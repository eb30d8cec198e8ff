//! Which tensor gets which type (`docs/format.md` §7 "What stays a standard type"). The rules work
//! on GGUF names and ggml dims, so `convert` and `quantize` share them.

use fairy2i_format::GgmlType;

/// `general.file_type` (llama_ftype) of the F2I types, indexed by stages − 1
/// (LLAMA_FTYPE_MOSTLY_F2I_W1..W4, fixed by ffi/patches).
pub const F2I_FTYPES: [u32; 4] = [64, 65, 66, 67];

/// The llama_ftype of a file whose weights are mostly `ty`.
pub fn file_type(ty: GgmlType) -> Option<u32> {
    Some(match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q8_0 => 7,
        GgmlType::BF16 => 32,
        t => {
            let stages = t.f2i_stages()?;
            *F2I_FTYPES.get(stages.checked_sub(1)?)?
        }
    })
}

/// The user's choices.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Type of the weight matrices.
    pub out: GgmlType,
    /// Type of token_embd when `out` is F2I.
    pub embd: GgmlType,
    /// Type of matrices F2I cannot hold.
    pub fallback: GgmlType,
}

/// What the plan decided for one tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    /// Always F32 (1-D tensors, norms, biases); `quantize` keeps these as they are.
    Keep,
    /// Quantize to this type.
    To(GgmlType),
    /// Quantize to this type because the wanted one cannot hold the tensor.
    Fallback {
        /// The type used.
        ty: GgmlType,
        /// The type wanted.
        wanted: GgmlType,
        /// Why not.
        reason: String,
    },
}

impl Choice {
    /// The resulting type (`keep` for [`Choice::Keep`]).
    pub fn ty(&self, keep: GgmlType) -> GgmlType {
        match self {
            Choice::Keep => keep,
            Choice::To(t) => *t,
            Choice::Fallback { ty, .. } => *ty,
        }
    }
}

/// Head counts of an architecture whose attn_q/attn_k rows are stored permuted (`llama`).
#[derive(Debug, Clone, Copy)]
pub struct PermutedHeads {
    /// Query heads.
    pub n_head: u64,
    /// Key/value heads.
    pub n_head_kv: u64,
}

/// Whether a tensor is always F32 in llama.cpp's converter.
pub fn is_always_f32(name: &str, dims: &[u64]) -> bool {
    dims.len() <= 1 || name.ends_with("_norm.weight") || !name.ends_with(".weight")
}

/// A type that fits rows of `ne0`, else F16 (as the reference converter falls back on a QuantError).
fn fitting(ty: GgmlType, wanted_by: GgmlType, ne0: u64) -> Choice {
    if ne0.is_multiple_of(ty.block_size()) {
        if ty == wanted_by {
            Choice::To(ty)
        } else {
            Choice::Fallback {
                ty,
                wanted: wanted_by,
                reason: String::new(),
            }
        }
    } else {
        Choice::Fallback {
            ty: GgmlType::F16,
            wanted: ty,
            reason: format!(
                "row of {ne0} is not a multiple of the {} block ({})",
                ty,
                ty.block_size()
            ),
        }
    }
}

/// Decides the type of tensor `name` with ggml `dims` (`convert`'s rules: token_embd gets
/// `opts.embd`, every other matrix `opts.out`).
pub fn choose(name: &str, dims: &[u64], opts: &Options, heads: Option<PermutedHeads>) -> Choice {
    if is_always_f32(name, dims) {
        return Choice::Keep;
    }
    let ne0 = dims.first().copied().unwrap_or(1);
    if !opts.out.is_f2i() {
        return fitting(opts.out, opts.out, ne0);
    }
    if name == "token_embd.weight" {
        return fitting(opts.embd, opts.embd, ne0);
    }
    choose_type(name, dims, opts.out, opts.fallback, heads)
}

/// How tensor `name` with ggml `dims` is written when `wanted` is asked for it: `wanted` if it can
/// hold the tensor, else `fallback` (else F16, when the fallback's blocks do not fit either) with the
/// reason. F2I needs a 2-D matrix with K % 256 = 0, N even and, for permuted Q/K, an even head count,
/// and is never used for token_embd; a k-quant needs K % 256 = 0; the 32-element types fall back to
/// F16 directly.
pub fn choose_type(
    name: &str,
    dims: &[u64],
    wanted: GgmlType,
    fallback: GgmlType,
    heads: Option<PermutedHeads>,
) -> Choice {
    if is_always_f32(name, dims) {
        return Choice::Keep;
    }
    let ne0 = dims.first().copied().unwrap_or(1);
    let fall = |reason: String| match fitting(fallback, fallback, ne0) {
        Choice::To(ty) => Choice::Fallback { ty, wanted, reason },
        Choice::Fallback { ty, reason: r2, .. } => Choice::Fallback {
            ty,
            wanted,
            reason: format!("{reason}; {r2}"),
        },
        Choice::Keep => Choice::Keep,
    };
    if !wanted.is_f2i() {
        if ne0.is_multiple_of(wanted.block_size()) {
            return Choice::To(wanted);
        }
        if wanted.block_size() > 32 {
            return fall(format!(
                "K = {ne0} is not a multiple of the {wanted} block ({})",
                wanted.block_size()
            ));
        }
        return fitting(wanted, wanted, ne0);
    }
    if name == "token_embd.weight" {
        return fall("token_embd is read row by row (GET_ROWS), F2I pairs rows".into());
    }
    if dims.len() != 2 {
        return fall(format!("{} dimensions", dims.len()));
    }
    let n = dims.get(1).copied().unwrap_or(1);
    if ne0 % 256 != 0 {
        return fall(format!("K = {ne0} is not a multiple of 256"));
    }
    if n % 2 != 0 {
        return fall(format!("N = {n} is odd"));
    }
    if let Some(h) = heads {
        let count = if name.ends_with(".attn_q.weight") {
            Some(h.n_head)
        } else if name.ends_with(".attn_k.weight") {
            Some(h.n_head_kv)
        } else {
            None
        };
        if let Some(c) = count.filter(|c| c % 2 != 0) {
            return fall(format!("{c} heads (odd) in a permuted Q/K matrix"));
        }
    }
    Choice::To(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const F2I: Options = Options {
        out: GgmlType::F2I_W2,
        embd: GgmlType::Q8_0,
        fallback: GgmlType::Q8_0,
    };

    #[test]
    fn f2i_rules() {
        assert_eq!(
            choose("blk.0.attn_norm.weight", &[512], &F2I, None),
            Choice::Keep
        );
        assert_eq!(
            choose("blk.0.attn_q.bias", &[512], &F2I, None),
            Choice::Keep
        );
        assert_eq!(
            choose("token_embd.weight", &[512, 100], &F2I, None),
            Choice::To(GgmlType::Q8_0)
        );
        assert_eq!(
            choose("output.weight", &[512, 100], &F2I, None),
            Choice::To(GgmlType::F2I_W2)
        );
        assert!(matches!(
            choose("blk.0.ffn_up.weight", &[576, 1536], &F2I, None),
            Choice::Fallback {
                ty: GgmlType::Q8_0,
                ..
            }
        ));
        assert!(matches!(
            choose("blk.0.ffn_up.weight", &[512, 7], &F2I, None),
            Choice::Fallback {
                ty: GgmlType::Q8_0,
                ..
            }
        ));
        let odd = Some(PermutedHeads {
            n_head: 9,
            n_head_kv: 3,
        });
        assert!(matches!(
            choose("blk.0.attn_q.weight", &[512, 576], &F2I, odd),
            Choice::Fallback { .. }
        ));
        assert!(matches!(
            choose("blk.0.attn_k.weight", &[512, 192], &F2I, odd),
            Choice::Fallback { .. }
        ));
        assert_eq!(
            choose("blk.0.attn_v.weight", &[512, 192], &F2I, odd),
            Choice::To(GgmlType::F2I_W2)
        );
        let even = Some(PermutedHeads {
            n_head: 4,
            n_head_kv: 2,
        });
        assert_eq!(
            choose("blk.0.attn_q.weight", &[512, 512], &F2I, even),
            Choice::To(GgmlType::F2I_W2)
        );
    }

    #[test]
    fn standard_rules() {
        let q8 = Options {
            out: GgmlType::Q8_0,
            ..F2I
        };
        assert_eq!(
            choose("blk.0.ffn_up.weight", &[64, 8], &q8, None),
            Choice::To(GgmlType::Q8_0)
        );
        assert!(matches!(
            choose("blk.0.ffn_up.weight", &[16, 8], &q8, None),
            Choice::Fallback {
                ty: GgmlType::F16,
                ..
            }
        ));
        assert_eq!(file_type(GgmlType::BF16), Some(32));
        // k-quants: K % 256, else the fallback type (else F16); F2I never for token_embd.
        assert_eq!(
            choose_type(
                "output.weight",
                &[512, 8],
                GgmlType::Q6_K,
                GgmlType::Q8_0,
                None
            ),
            Choice::To(GgmlType::Q6_K)
        );
        assert!(matches!(
            choose_type(
                "output.weight",
                &[576, 8],
                GgmlType::Q6_K,
                GgmlType::Q8_0,
                None
            ),
            Choice::Fallback {
                ty: GgmlType::Q8_0,
                wanted: GgmlType::Q6_K,
                ..
            }
        ));
        assert!(matches!(
            choose_type(
                "output.weight",
                &[48, 8],
                GgmlType::Q4_K,
                GgmlType::Q8_0,
                None
            ),
            Choice::Fallback {
                ty: GgmlType::F16,
                ..
            }
        ));
        assert!(matches!(
            choose_type(
                "token_embd.weight",
                &[512, 8],
                GgmlType::F2I_W3,
                GgmlType::Q4_0,
                None
            ),
            Choice::Fallback {
                ty: GgmlType::Q4_0,
                wanted: GgmlType::F2I_W3,
                ..
            }
        ));
        assert_eq!(
            choose_type(
                "blk.0.attn_norm.weight",
                &[512],
                GgmlType::Q6_K,
                GgmlType::Q8_0,
                None
            ),
            Choice::Keep
        );
        assert_eq!(file_type(GgmlType::F2I_W2), Some(65));
    }
}
