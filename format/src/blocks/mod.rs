//! ggml's standard block types (the layouts of `ggml/src/ggml-common.h`): dequantize to f32, and
//! quantize the types a converter writes besides F2I. The float types and Q4_0/Q8_0 are bit-exact
//! with gguf-py's numpy codecs (`gguf-py/gguf/quants.py` of the pinned llama.cpp b11434), which
//! mirror ggml's reference code; `tools/gen_block_golden.py` records gguf-py's answers and
//! `tests/blocks_*.rs` compare against them. The k-quants Q2_K … Q6_K, which gguf-py cannot encode,
//! give llama-quantize's bytes: its reference quantizers without an imatrix ([`quantize_into`]) and
//! its imatrix-weighted ones with one ([`quantize_weighted_into`]); `tests/kquants_golden.rs` holds
//! llama-quantize output for them.
//!
//! Each block type is one `#[repr(C)]` [`bytemuck::Pod`] struct with a size assert and one
//! [`BlockType`] impl; the table at the bottom of this file maps [`GgmlType`]s to them. F2I tensors
//! are not here: their rows pair up, so they go through [`crate::f2i::dequantize_tensor`].

mod float;
mod kquants;
mod ksearch;
mod legacy;
mod ternary;

pub use kquants::{BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K, K_SCALE_SIZE, QK_K};
pub use legacy::{
    BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, QK4_0, QK4_1, QK5_0, QK5_1, QK8_0,
};
pub use ternary::BlockTQ2_0;

use crate::error::{Error, Result};
use crate::types::GgmlType;

/// One block of a ggml tensor type: `BLCK_SIZE` values stored in `size_of::<Self>()` bytes. The
/// methods are named after the fields of ggml's `type_traits` rows.
pub trait BlockType: bytemuck::Pod {
    /// The tensor type this block belongs to.
    const TYPE: GgmlType;
    /// Values per block (ggml's `blck_size`).
    const BLCK_SIZE: usize;

    /// Writes the block's `BLCK_SIZE` values to `y` (ggml's `dequantize_row_<t>` for one block).
    /// `y.len()` must be `BLCK_SIZE` (the drivers below pass exact chunks); a shorter `y` panics.
    fn to_float(&self, y: &mut [f32]);

    /// Quantizes `BLCK_SIZE` values (ggml's `quantize_row_<t>_ref` for one block), or `None` for the
    /// types without a reference quantizer here (ggml's `from_float_ref` being NULL, or a k-quant whose
    /// search gguf-py does not implement). `x.len()` must be `BLCK_SIZE`.
    fn from_float_ref(x: &[f32]) -> Option<Self> {
        let _ = x;
        None
    }

    /// Quantizes `BLCK_SIZE` values with importance `qw` (one weight per value: the imatrix entries
    /// of their columns), as ggml's `quantize_<t>` does when llama-quantize passes an imatrix; `None`
    /// for the types without such a path here. `x.len()` and `qw.len()` must be `BLCK_SIZE`.
    fn from_float_weighted(x: &[f32], qw: &[f32]) -> Option<Self> {
        let _ = (x, qw);
        None
    }
}

/// Converts an f32 holding an integral value to an integer the way numpy's `astype` (and C's cast on
/// x86) does: through a 32-bit integer, wrapping; NaN, infinities and values outside `i32` give
/// `i32::MIN` (x86's "integer indefinite"). Only degenerate blocks (a scale so small that its
/// inverse overflows) reach the non-obvious cases; this keeps them bit-exact with gguf-py too.
#[inline]
fn to_i32_like_numpy(v: f32) -> i32 {
    if v.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&v) {
        i32::MIN
    } else {
        v as i32
    }
}

/// Dequantizes whole blocks of `B` from `data` into `out`. Works on unaligned data too.
pub fn dequantize_blocks<B: BlockType>(data: &[u8], out: &mut [f32]) -> Result<()> {
    let bs = std::mem::size_of::<B>();
    if !data.len().is_multiple_of(bs) {
        return Err(Error::BlockDataSize {
            ty: B::TYPE.name(),
            len: data.len() as u64,
            type_size: bs as u64,
        });
    }
    let expected = (data.len() / bs)
        .checked_mul(B::BLCK_SIZE)
        .ok_or(Error::Overflow("dequantized length"))?;
    if out.len() != expected {
        return Err(Error::LengthMismatch {
            what: "f32 values out of dequantization",
            expected: expected as u64,
            got: out.len() as u64,
        });
    }
    let ys = out.chunks_exact_mut(B::BLCK_SIZE);
    match bytemuck::try_cast_slice::<u8, B>(data) {
        Ok(blocks) => blocks.iter().zip(ys).for_each(|(b, y)| b.to_float(y)),
        Err(_) => data
            .chunks_exact(bs)
            .zip(ys)
            .for_each(|(c, y)| bytemuck::pod_read_unaligned::<B>(c).to_float(y)),
    }
    Ok(())
}

/// Quantizes `src` (a whole number of blocks) into whole blocks of `B`, filling `out` exactly.
pub fn quantize_blocks<B: BlockType>(src: &[f32], out: &mut [u8]) -> Result<()> {
    let bs = std::mem::size_of::<B>();
    if !src.len().is_multiple_of(B::BLCK_SIZE) {
        return Err(Error::RowNotBlockAligned {
            ty: B::TYPE.name(),
            ne0: src.len() as u64,
            block: B::BLCK_SIZE as u64,
        });
    }
    let expected = (src.len() / B::BLCK_SIZE)
        .checked_mul(bs)
        .ok_or(Error::Overflow("quantized length"))?;
    if out.len() != expected {
        return Err(Error::LengthMismatch {
            what: "bytes out of quantization",
            expected: expected as u64,
            got: out.len() as u64,
        });
    }
    for (x, o) in src.chunks_exact(B::BLCK_SIZE).zip(out.chunks_exact_mut(bs)) {
        let block = B::from_float_ref(x).ok_or_else(|| unsupported("f32", B::TYPE.name()))?;
        o.copy_from_slice(bytemuck::bytes_of(&block));
    }
    Ok(())
}

/// Quantizes rows of `src` into whole blocks of `B` with the importance `importance` of each column
/// (one row's worth: row length = `importance.len()`), filling `out` exactly.
pub fn quantize_blocks_weighted<B: BlockType>(
    src: &[f32],
    importance: &[f32],
    out: &mut [u8],
) -> Result<()> {
    let n_per_row = importance.len();
    if n_per_row == 0 || !n_per_row.is_multiple_of(B::BLCK_SIZE) {
        return Err(Error::RowNotBlockAligned {
            ty: B::TYPE.name(),
            ne0: n_per_row as u64,
            block: B::BLCK_SIZE as u64,
        });
    }
    if !src.len().is_multiple_of(n_per_row) {
        return Err(Error::LengthMismatch {
            what: "values to quantize (a whole number of rows as long as the importance)",
            expected: (src.len() / n_per_row * n_per_row) as u64,
            got: src.len() as u64,
        });
    }
    let bs = std::mem::size_of::<B>();
    let expected = (src.len() / B::BLCK_SIZE)
        .checked_mul(bs)
        .ok_or(Error::Overflow("quantized length"))?;
    if out.len() != expected {
        return Err(Error::LengthMismatch {
            what: "bytes out of quantization",
            expected: expected as u64,
            got: out.len() as u64,
        });
    }
    let blocks_per_row = n_per_row / B::BLCK_SIZE;
    for (i, (x, o)) in src
        .chunks_exact(B::BLCK_SIZE)
        .zip(out.chunks_exact_mut(bs))
        .enumerate()
    {
        let b = i % blocks_per_row;
        let qw = &importance[b * B::BLCK_SIZE..(b + 1) * B::BLCK_SIZE];
        let block =
            B::from_float_weighted(x, qw).ok_or_else(|| unsupported("f32", B::TYPE.name()))?;
        o.copy_from_slice(bytemuck::bytes_of(&block));
    }
    Ok(())
}

/// Whether [`quantize_weighted_into`] handles `ty` (the k-quants).
pub fn can_quantize_weighted(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K
    )
}

/// Quantizes whole rows of `src` to `ty` with per-column importance (an imatrix entry, as long as
/// one row), as llama-quantize does with `--imatrix`; `out` must have exactly the size of the result.
pub fn quantize_weighted_into(
    ty: GgmlType,
    src: &[f32],
    importance: &[f32],
    out: &mut [u8],
) -> Result<()> {
    match ty {
        GgmlType::Q2_K => quantize_blocks_weighted::<BlockQ2_K>(src, importance, out),
        GgmlType::Q3_K => quantize_blocks_weighted::<BlockQ3_K>(src, importance, out),
        GgmlType::Q4_K => quantize_blocks_weighted::<BlockQ4_K>(src, importance, out),
        GgmlType::Q5_K => quantize_blocks_weighted::<BlockQ5_K>(src, importance, out),
        GgmlType::Q6_K => quantize_blocks_weighted::<BlockQ6_K>(src, importance, out),
        _ => Err(unsupported("f32", ty.name())),
    }
}

fn unsupported(from: &'static str, to: &'static str) -> Error {
    Error::UnsupportedConversion { from, to }
}

/// The type table: which [`GgmlType`] is which block struct, and which of them quantize.
macro_rules! block_table {
    ($( $variant:ident => $block:ty $(, $q:ident)? ; )*) => {
        $(
            const _: () = assert!(<$block as BlockType>::TYPE as u32 == GgmlType::$variant as u32);
        )*

        /// Whether [`dequantize`] handles `ty` (row-independent types only; F2I goes through
        /// [`crate::f2i::dequantize_tensor`]).
        pub fn can_dequantize(ty: GgmlType) -> bool {
            matches!(ty, $( GgmlType::$variant )|*)
        }

        /// Whether [`quantize`] handles `ty`.
        pub fn can_quantize(ty: GgmlType) -> bool {
            match ty {
                $( GgmlType::$variant => block_table!(@q $($q)?), )*
                _ => false,
            }
        }

        /// Dequantizes `data` (a whole number of blocks of `ty`) into `out` (one f32 per element).
        pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<()> {
            match ty {
                $( GgmlType::$variant => dequantize_blocks::<$block>(data, out), )*
                _ => Err(unsupported(ty.name(), "f32")),
            }
        }

        /// Quantizes `src` (a whole number of blocks) to `ty` into `out`, which must have exactly
        /// the size of the result (`src.len() / block_size * type_size` bytes).
        pub fn quantize_into(ty: GgmlType, src: &[f32], out: &mut [u8]) -> Result<()> {
            match ty {
                $( GgmlType::$variant if block_table!(@q $($q)?) => quantize_blocks::<$block>(src, out), )*
                _ => Err(unsupported("f32", ty.name())),
            }
        }

        #[cfg(test)]
        fn check_table_sizes() {
            $(
                assert_eq!(std::mem::size_of::<$block>() as u64, GgmlType::$variant.type_size(), stringify!($variant));
                assert_eq!(<$block as BlockType>::BLCK_SIZE as u64, GgmlType::$variant.block_size(), stringify!($variant));
            )*
        }
    };
    (@q quantize) => { true };
    (@q) => { false };
}

block_table! {
    F32 => f32, quantize;
    F16 => half::f16, quantize;
    BF16 => half::bf16, quantize;
    Q4_0 => BlockQ4_0, quantize;
    Q4_1 => BlockQ4_1;
    Q5_0 => BlockQ5_0;
    Q5_1 => BlockQ5_1;
    Q8_0 => BlockQ8_0, quantize;
    Q2_K => BlockQ2_K, quantize;
    Q3_K => BlockQ3_K, quantize;
    Q4_K => BlockQ4_K, quantize;
    Q5_K => BlockQ5_K, quantize;
    Q6_K => BlockQ6_K, quantize;
    TQ2_0 => BlockTQ2_0;
}

/// Quantizes `src` (a whole number of blocks) to `ty`, appending the bytes to `out`.
pub fn quantize(ty: GgmlType, src: &[f32], out: &mut Vec<u8>) -> Result<()> {
    if !can_quantize(ty) {
        return Err(unsupported("f32", ty.name()));
    }
    let blck = ty.block_size() as usize;
    if !src.len().is_multiple_of(blck) {
        return Err(Error::RowNotBlockAligned {
            ty: ty.name(),
            ne0: src.len() as u64,
            block: blck as u64,
        });
    }
    let n = (src.len() / blck)
        .checked_mul(ty.type_size() as usize)
        .ok_or(Error::Overflow("quantized length"))?;
    let start = out.len();
    out.resize(start + n, 0);
    let res = quantize_into(ty, src, out.get_mut(start..).unwrap_or_default());
    if res.is_err() {
        out.truncate(start);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_the_type_table() {
        check_table_sizes();
    }

    #[test]
    fn support_lists() {
        for ty in [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::BF16,
            GgmlType::Q8_0,
            GgmlType::Q4_0,
        ] {
            assert!(can_quantize(ty) && can_dequantize(ty), "{ty}");
        }
        assert!(can_dequantize(GgmlType::Q4_1) && !can_quantize(GgmlType::Q4_1));
        for ty in [
            GgmlType::Q2_K,
            GgmlType::Q3_K,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
        ] {
            assert!(can_quantize(ty) && can_quantize_weighted(ty), "{ty}");
        }
        assert!(!can_quantize_weighted(GgmlType::Q8_0));
        for ty in [
            GgmlType::F2I_W2,
            GgmlType::IQ2_XXS,
            GgmlType::Q8_K,
            GgmlType::I32,
        ] {
            assert!(!can_quantize(ty) && !can_dequantize(ty), "{ty}");
        }
    }

    #[test]
    fn rejects_partial_blocks_and_wrong_lengths() {
        let mut out = vec![0f32; 32];
        let e = dequantize(GgmlType::Q8_0, &[0u8; 35], &mut out).unwrap_err();
        assert!(
            matches!(
                e,
                Error::BlockDataSize {
                    len: 35,
                    type_size: 34,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("q8_0 data of 35 bytes"), "{e}");
        let e = dequantize(GgmlType::Q8_0, &[0u8; 68], &mut out).unwrap_err();
        assert!(
            matches!(
                e,
                Error::LengthMismatch {
                    expected: 64,
                    got: 32,
                    ..
                }
            ),
            "{e}"
        );
        let e = dequantize(GgmlType::IQ2_XS, &[], &mut []).unwrap_err();
        assert!(
            matches!(
                e,
                Error::UnsupportedConversion {
                    from: "iq2_xs",
                    to: "f32"
                }
            ),
            "{e}"
        );

        let mut bytes = vec![7u8];
        let e = quantize(GgmlType::Q4_0, &[0.0; 33], &mut bytes).unwrap_err();
        assert!(
            matches!(
                e,
                Error::RowNotBlockAligned {
                    ne0: 33,
                    block: 32,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(bytes, [7]);
        let e = quantize(GgmlType::Q4_1, &[0.0; 32], &mut bytes).unwrap_err();
        assert!(
            matches!(
                e,
                Error::UnsupportedConversion {
                    from: "f32",
                    to: "q4_1"
                }
            ),
            "{e}"
        );
        let e = quantize_weighted_into(GgmlType::Q6_K, &[0.0; 512], &[1.0; 384], &mut [0u8; 420])
            .unwrap_err();
        assert!(
            matches!(e, Error::RowNotBlockAligned { ne0: 384, .. }),
            "{e}"
        );
        let e = quantize_weighted_into(GgmlType::Q6_K, &[0.0; 768], &[1.0; 512], &mut [0u8; 630])
            .unwrap_err();
        assert!(matches!(e, Error::LengthMismatch { got: 768, .. }), "{e}");
        let e = quantize_weighted_into(GgmlType::Q8_0, &[0.0; 256], &[1.0; 256], &mut [0u8; 272])
            .unwrap_err();
        assert!(
            matches!(e, Error::UnsupportedConversion { to: "q8_0", .. }),
            "{e}"
        );
        let e = quantize_into(GgmlType::Q8_0, &[0.0; 32], &mut [0u8; 33]).unwrap_err();
        assert!(
            matches!(
                e,
                Error::LengthMismatch {
                    expected: 34,
                    got: 33,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn quantize_appends() {
        let mut bytes = vec![1u8, 2];
        quantize(GgmlType::Q8_0, &[1.0; 64], &mut bytes).unwrap();
        assert_eq!(bytes.len(), 2 + 68);
        assert_eq!(&bytes[..2], &[1, 2]);
    }

    #[test]
    fn unaligned_data_dequantizes_like_aligned() {
        let mut storage = vec![0u8; 1 + 2 * 210];
        for (i, b) in storage.iter_mut().enumerate() {
            *b = (i * 37 % 251) as u8;
        }
        // Keep the f16 scales finite: d is the last two bytes of each Q6_K block.
        for blk in 0..2 {
            storage[1 + blk * 210 + 208] = 0x00;
            storage[1 + blk * 210 + 209] = 0x3c;
        }
        let aligned: Vec<u8> = storage[1..].to_vec();
        let (mut a, mut b) = (vec![0f32; 512], vec![0f32; 512]);
        dequantize(GgmlType::Q6_K, &storage[1..], &mut a).unwrap();
        dequantize(GgmlType::Q6_K, &aligned, &mut b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn numpy_cast_emulation() {
        assert_eq!(to_i32_like_numpy(3.0), 3);
        assert_eq!(to_i32_like_numpy(-300.0) as i8, -44);
        assert_eq!(to_i32_like_numpy(f32::INFINITY), i32::MIN);
        assert_eq!(to_i32_like_numpy(f32::NAN), i32::MIN);
        assert_eq!(to_i32_like_numpy(3.0e9), i32::MIN);
    }
}
