//! Every tensor type a GGUF file can carry: ggml's own types (ids as in the pinned llama.cpp b11434,
//! `ggml/include/ggml.h`) and the F2I types of `docs/format.md` §1. Each type is declared once, in the
//! table below; the enum and all per-type facts are generated from it.

use crate::error::{Error, Result};

macro_rules! ggml_types {
    ($( $(#[$doc:meta])* $variant:ident = $id:literal, $name:literal, $blck:literal, $size:expr; )*) => {
        /// A ggml tensor type (`enum ggml_type`), including the F2I types.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(non_camel_case_types)]
        #[repr(u32)]
        pub enum GgmlType {
            $( $(#[$doc])* $variant = $id, )*
        }

        impl GgmlType {
            /// Every known type, in id order.
            pub const ALL: &'static [GgmlType] = &[$(GgmlType::$variant,)*];

            /// The type with this numeric id, if ggml (or the F2I extension) defines one.
            pub fn from_u32(id: u32) -> Option<GgmlType> {
                match id {
                    $( $id => Some(GgmlType::$variant), )*
                    _ => None,
                }
            }

            /// ggml's `type_name` (lower case, e.g. `q8_0`, `f2i_w2`).
            pub fn name(self) -> &'static str {
                match self { $( GgmlType::$variant => $name, )* }
            }

            /// Elements per block (`blck_size`).
            pub fn block_size(self) -> u64 {
                match self { $( GgmlType::$variant => $blck, )* }
            }

            /// Bytes per block (`type_size`).
            pub fn type_size(self) -> u64 {
                match self { $( GgmlType::$variant => $size, )* }
            }
        }
    };
}

const QK_K: u64 = 256;

ggml_types! {
    /// 32-bit IEEE float.
    F32 = 0, "f32", 1, 4;
    /// 16-bit IEEE float.
    F16 = 1, "f16", 1, 2;
    /// 4-bit, 32-element blocks, f16 scale.
    Q4_0 = 2, "q4_0", 32, 2 + 16;
    /// 4-bit, 32-element blocks, f16 scale and min.
    Q4_1 = 3, "q4_1", 32, 2 + 2 + 16;
    /// 5-bit, 32-element blocks, f16 scale.
    Q5_0 = 6, "q5_0", 32, 2 + 4 + 16;
    /// 5-bit, 32-element blocks, f16 scale and min.
    Q5_1 = 7, "q5_1", 32, 2 + 2 + 4 + 16;
    /// 8-bit, 32-element blocks, f16 scale.
    Q8_0 = 8, "q8_0", 32, 2 + 32;
    /// 8-bit, 32-element blocks, f16 scale and sum.
    Q8_1 = 9, "q8_1", 32, 2 + 2 + 32;
    /// k-quant 2-bit.
    Q2_K = 10, "q2_K", 256, 2 + 2 + QK_K / 16 + QK_K / 4;
    /// k-quant 3-bit.
    Q3_K = 11, "q3_K", 256, 2 + QK_K / 4 + QK_K / 8 + 12;
    /// k-quant 4-bit.
    Q4_K = 12, "q4_K", 256, 2 + 2 + QK_K / 2 + 12;
    /// k-quant 5-bit.
    Q5_K = 13, "q5_K", 256, 2 + 2 + QK_K / 2 + QK_K / 8 + 12;
    /// k-quant 6-bit.
    Q6_K = 14, "q6_K", 256, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16;
    /// k-quant 8-bit (activations).
    Q8_K = 15, "q8_K", 256, 4 + QK_K + QK_K / 8;
    /// i-quant 2.06 bpw.
    IQ2_XXS = 16, "iq2_xxs", 256, 2 + QK_K / 4;
    /// i-quant 2.31 bpw.
    IQ2_XS = 17, "iq2_xs", 256, 2 + QK_K / 4 + QK_K / 32;
    /// i-quant 3.06 bpw.
    IQ3_XXS = 18, "iq3_xxs", 256, 2 + QK_K / 4 + QK_K / 8;
    /// i-quant 1.56 bpw.
    IQ1_S = 19, "iq1_s", 256, 2 + QK_K / 8 + QK_K / 16;
    /// i-quant 4-bit non-linear.
    IQ4_NL = 20, "iq4_nl", 32, 2 + 16;
    /// i-quant 3.44 bpw.
    IQ3_S = 21, "iq3_s", 256, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4;
    /// i-quant 2.5 bpw.
    IQ2_S = 22, "iq2_s", 256, 2 + QK_K / 4 + QK_K / 16;
    /// i-quant 4.25 bpw.
    IQ4_XS = 23, "iq4_xs", 256, 2 + 2 + QK_K / 2 + QK_K / 64;
    /// 8-bit integer.
    I8 = 24, "i8", 1, 1;
    /// 16-bit integer.
    I16 = 25, "i16", 1, 2;
    /// 32-bit integer.
    I32 = 26, "i32", 1, 4;
    /// 64-bit integer.
    I64 = 27, "i64", 1, 8;
    /// 64-bit float.
    F64 = 28, "f64", 1, 8;
    /// i-quant 1.75 bpw.
    IQ1_M = 29, "iq1_m", 256, QK_K / 8 + QK_K / 16 + QK_K / 32;
    /// bfloat16.
    BF16 = 30, "bf16", 1, 2;
    /// ternary 1.69 bpw.
    TQ1_0 = 34, "tq1_0", 256, 2 + 4 * 13;
    /// ternary 2.06 bpw.
    TQ2_0 = 35, "tq2_0", 256, 2 + 64;
    /// MX FP4.
    MXFP4 = 39, "mxfp4", 32, 1 + 16;
    /// NV FP4.
    NVFP4 = 40, "nvfp4", 64, 4 + 32;
    /// 1-bit, 128-element blocks.
    Q1_0 = 41, "q1_0", 128, 2 + 16;
    /// 2-bit, 64-element blocks.
    Q2_0 = 42, "q2_0", 64, 2 + 16;
    /// Fairy2i, 1 residual stage: 1.125 bits per weight.
    F2I_W1 = 64, "f2i_w1", 256, 36;
    /// Fairy2i, 2 residual stages: 2.25 bits per weight.
    F2I_W2 = 65, "f2i_w2", 256, 72;
    /// Fairy2i, 3 residual stages: 3.375 bits per weight.
    F2I_W3 = 66, "f2i_w3", 256, 108;
    /// Fairy2i, 4 residual stages: 4.5 bits per weight.
    F2I_W4 = 67, "f2i_w4", 256, 144;
}

impl GgmlType {
    /// The numeric id written into GGUF tensor infos.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Bits per weight of this type.
    pub fn bits_per_weight(self) -> f64 {
        self.type_size() as f64 * 8.0 / self.block_size() as f64
    }

    /// Residual stages of an F2I type (1..=4), `None` for every other type.
    pub fn f2i_stages(self) -> Option<usize> {
        match self {
            GgmlType::F2I_W1 => Some(1),
            GgmlType::F2I_W2 => Some(2),
            GgmlType::F2I_W3 => Some(3),
            GgmlType::F2I_W4 => Some(4),
            _ => None,
        }
    }

    /// The F2I type with this many stages (1..=4).
    pub fn f2i_with_stages(stages: usize) -> Option<GgmlType> {
        match stages {
            1 => Some(GgmlType::F2I_W1),
            2 => Some(GgmlType::F2I_W2),
            3 => Some(GgmlType::F2I_W3),
            4 => Some(GgmlType::F2I_W4),
            _ => None,
        }
    }

    /// Whether this is one of the F2I types.
    pub fn is_f2i(self) -> bool {
        self.f2i_stages().is_some()
    }

    /// Bytes of a row of `ne0` elements, or an error if `ne0` is not a whole number of blocks.
    pub fn row_size(self, ne0: u64) -> Result<u64> {
        let blck = self.block_size();
        if !ne0.is_multiple_of(blck) {
            return Err(Error::RowNotBlockAligned {
                ty: self.name(),
                ne0,
                block: blck,
            });
        }
        (ne0 / blck)
            .checked_mul(self.type_size())
            .ok_or(Error::Overflow("row size"))
    }

    /// Bytes of a tensor with these dims (ggml order, `ne[0]` first), checked for overflow.
    pub fn tensor_size(self, dims: &[u64]) -> Result<u64> {
        let ne0 = dims.first().copied().unwrap_or(1);
        let mut size = self.row_size(ne0)?;
        for &d in dims.iter().skip(1) {
            size = size.checked_mul(d).ok_or(Error::Overflow("tensor size"))?;
        }
        Ok(size)
    }

    /// Looks a type up by its ggml name, case-insensitively (`Q8_0`, `q8_0`, `f2i_w2`).
    pub fn from_name(name: &str) -> Option<GgmlType> {
        GgmlType::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for GgmlType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        GgmlType::from_name(s).ok_or_else(|| Error::UnknownTypeName(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f2i_sizes_match_the_design_of_record() {
        // docs/format.md §1: 36 bytes per stage per 256 real weights.
        for t in 1..=4 {
            let ty = GgmlType::f2i_with_stages(t).unwrap();
            assert_eq!(ty.id(), 63 + t as u32);
            assert_eq!(ty.block_size(), 256);
            assert_eq!(ty.type_size(), 36 * t as u64);
            assert_eq!(ty.bits_per_weight(), 1.125 * t as f64);
            assert_eq!(ty.f2i_stages(), Some(t));
        }
    }

    #[test]
    fn ids_round_trip_and_gaps_are_unknown() {
        for &t in GgmlType::ALL {
            assert_eq!(GgmlType::from_u32(t.id()), Some(t));
            assert_eq!(t.name().parse::<GgmlType>().unwrap(), t);
        }
        for gap in [4, 5, 31, 32, 33, 36, 37, 38, 43, 63, 68] {
            assert_eq!(GgmlType::from_u32(gap), None);
        }
    }

    #[test]
    fn row_size_rejects_partial_blocks() {
        assert_eq!(GgmlType::Q8_0.row_size(64).unwrap(), 68);
        assert!(GgmlType::F2I_W2.row_size(576).is_err());
        assert_eq!(GgmlType::F2I_W2.tensor_size(&[512, 4]).unwrap(), 2 * 72 * 4);
    }
}
