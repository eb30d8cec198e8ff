//! What the backend runs (docs/abi.md §4): one pure predicate over a plain description of a node,
//! shared by `supports_op` (where buffers may be placeholders) and `graph_compute` (which adds the
//! run-time checks on pointers in `abi.rs`).

use std::fmt;

use fairy2i_format::GgmlType;

use crate::kernels::{QK, STAGE_BYTES};

/// `GGML_OP_NONE` (the ids are pinned by `_Static_assert`s in the shim).
pub const GGML_OP_NONE: i32 = 0;
/// `GGML_OP_MUL_MAT`.
pub const GGML_OP_MUL_MAT: i32 = 29;
/// `GGML_OP_GET_ROWS`.
pub const GGML_OP_GET_ROWS: i32 = 40;
/// `GGML_OP_RESHAPE`.
pub const GGML_OP_RESHAPE: i32 = 36;
/// `GGML_OP_VIEW`.
pub const GGML_OP_VIEW: i32 = 37;
/// `GGML_OP_PERMUTE`.
pub const GGML_OP_PERMUTE: i32 = 38;
/// `GGML_OP_TRANSPOSE`.
pub const GGML_OP_TRANSPOSE: i32 = 39;
/// `GGML_TYPE_F32`.
pub const GGML_TYPE_F32: i32 = 0;
/// `GGML_TYPE_I32`.
pub const GGML_TYPE_I32: i32 = 26;

/// The parts of a `struct ggml_tensor` the predicate looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorDesc {
    /// `type`.
    pub ty: i32,
    /// `ne[0..4]`.
    pub ne: [i64; 4],
    /// `nb[0..4]` in bytes.
    pub nb: [usize; 4],
    /// `view_src != NULL`.
    pub is_view: bool,
    /// The tensor's buffer has this device's buffer type (a placeholder buffer counts).
    pub in_our_buft: bool,
}

/// A node: its op, itself and its first two sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpDesc {
    /// `op`.
    pub op: i32,
    /// The node.
    pub dst: TensorDesc,
    /// `src[0]`.
    pub src0: Option<TensorDesc>,
    /// `src[1]`.
    pub src1: Option<TensorDesc>,
}

/// A matrix product this backend runs: y = Â x for every column of src1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MulMatPlan {
    /// The F2I type of the weight.
    pub ty: GgmlType,
    /// Stages of that type (1..=4).
    pub stages: usize,
    /// Real inputs per column (ne00 = ne10 = 2m).
    pub k: usize,
    /// Real outputs per column (ne01 = ne0 = 2n).
    pub n_rows: usize,
    /// Bytes of one stored weight row.
    pub row_bytes: usize,
    /// Bytes of the whole weight.
    pub weight_bytes: usize,
    /// Columns along src1's dims 1..3 (ne11, ne12, ne13).
    pub cols: [usize; 3],
    /// src1 strides of dims 1..3 in f32 elements.
    pub src1_strides: [usize; 3],
    /// Elements of src1 from its first to one past its last used value.
    pub src1_extent: usize,
    /// Elements of dst (contiguous, n_rows per column).
    pub dst_len: usize,
}

impl MulMatPlan {
    /// Total columns.
    pub fn n_cols(&self) -> usize {
        self.cols[0] * self.cols[1] * self.cols[2]
    }

    /// The offset (in f32 elements) of column `c` in src1, columns numbered dim 1 fastest.
    pub fn src1_offset(&self, c: usize) -> usize {
        let i1 = c % self.cols[0];
        let i2 = c / self.cols[0] % self.cols[1];
        let i3 = c / (self.cols[0] * self.cols[1]);
        i1 * self.src1_strides[0] + i2 * self.src1_strides[1] + i3 * self.src1_strides[2]
    }
}

/// GET_ROWS from an F2I weight: rows of the real matrix the stored rows encode, decoded to f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetRowsPlan {
    /// The F2I type of the weight.
    pub ty: GgmlType,
    /// Stages of that type.
    pub stages: usize,
    /// Real inputs per row (ne00).
    pub k: usize,
    /// Real rows of the weight (ne01), even.
    pub n_rows: usize,
    /// Bytes of one stored row.
    pub row_bytes: usize,
    /// Row indices asked for (all of src1's elements, contiguous I32).
    pub n_idx: usize,
}

/// What a supported node asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Supported {
    /// A no-op view (NONE, RESHAPE, VIEW, PERMUTE, TRANSPOSE): nothing to compute.
    View,
    /// A matrix product with an F2I weight.
    MulMat(MulMatPlan),
    /// A MUL_MAT with an F2I weight and no columns (e.g. the last layer of a micro-batch that
    /// needs no outputs): nothing to compute.
    Empty,
    /// Rows of an F2I weight decoded to f32.
    GetRows(GetRowsPlan),
}

/// Why a node is refused, for the debug log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Any op other than MUL_MAT and the view ops.
    Op(i32),
    /// A source is missing.
    MissingSource(usize),
    /// src0 is not an F2I type.
    WeightType(i32),
    /// The weight is not in a buffer of this backend's buffer type.
    WeightBuffer,
    /// The weight is a view of another tensor (row pairing would be lost).
    WeightView,
    /// A shape or stride condition, described.
    Shape(&'static str, [i64; 4]),
    /// A size does not fit in memory arithmetic.
    Overflow,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Op(op) => write!(f, "op {op} is not MUL_MAT or a view op"),
            Refusal::MissingSource(i) => write!(f, "src[{i}] is missing"),
            Refusal::WeightType(ty) => write!(f, "src0 type {ty} is not an F2I type"),
            Refusal::WeightBuffer => write!(f, "src0 is not in a FAIRY2I buffer"),
            Refusal::WeightView => write!(f, "src0 is a view"),
            Refusal::Shape(what, ne) => write!(f, "{what} (ne {ne:?})"),
            Refusal::Overflow => write!(f, "sizes overflow"),
        }
    }
}

fn dims(ne: [i64; 4]) -> Option<[usize; 4]> {
    let mut out = [0usize; 4];
    for (o, &d) in out.iter_mut().zip(&ne) {
        *o = usize::try_from(d).ok().filter(|&d| d > 0)?;
    }
    Some(out)
}

/// Decides whether this backend runs `op`; the same answer in `supports_op` and `graph_compute`.
pub fn check(op: &OpDesc) -> Result<Supported, Refusal> {
    match op.op {
        GGML_OP_NONE | GGML_OP_RESHAPE | GGML_OP_VIEW | GGML_OP_PERMUTE | GGML_OP_TRANSPOSE => {
            Ok(Supported::View)
        }
        GGML_OP_MUL_MAT => {
            let empty = |t: &Option<TensorDesc>| t.is_some_and(|t| t.ne.contains(&0));
            if empty(&op.src1) || op.dst.ne.contains(&0) {
                // the weight must still be one of ours; its shape is irrelevant without columns
                check_weight(op)?;
                return Ok(Supported::Empty);
            }
            check_mul_mat(op).map(Supported::MulMat)
        }
        GGML_OP_GET_ROWS => check_get_rows(op).map(Supported::GetRows),
        other => Err(Refusal::Op(other)),
    }
}

/// The F2I weight (src0) of a node: its type, stages, K, N and row bytes, checked as
/// [`check_mul_mat`] documents.
fn check_weight(op: &OpDesc) -> Result<(GgmlType, usize, usize, usize, usize), Refusal> {
    let w = op.src0.ok_or(Refusal::MissingSource(0))?;
    let ty = u32::try_from(w.ty)
        .ok()
        .and_then(GgmlType::from_u32)
        .filter(|t| t.is_f2i())
        .ok_or(Refusal::WeightType(w.ty))?;
    let stages = ty.f2i_stages().ok_or(Refusal::WeightType(w.ty))?;
    if !w.in_our_buft {
        return Err(Refusal::WeightBuffer);
    }
    if w.is_view {
        return Err(Refusal::WeightView);
    }

    // weight: 2-D, contiguous, K % 256 == 0, N even
    let [k, n_rows, w2, w3] = dims(w.ne).ok_or(Refusal::Shape("src0 has an empty dim", w.ne))?;
    if w2 != 1 || w3 != 1 {
        return Err(Refusal::Shape("src0 is not 2-D", w.ne));
    }
    if !k.is_multiple_of(QK) {
        return Err(Refusal::Shape("src0 ne0 is not a multiple of 256", w.ne));
    }
    if !n_rows.is_multiple_of(2) {
        return Err(Refusal::Shape("src0 ne1 is odd", w.ne));
    }
    let type_size = stages * STAGE_BYTES;
    let row_bytes = (k / QK).checked_mul(type_size).ok_or(Refusal::Overflow)?;
    let weight_bytes = row_bytes.checked_mul(n_rows).ok_or(Refusal::Overflow)?;
    if w.nb != [type_size, row_bytes, weight_bytes, weight_bytes] {
        return Err(Refusal::Shape("src0 is not contiguous", w.ne));
    }
    Ok((ty, stages, k, n_rows, row_bytes))
}

/// GET_ROWS: an F2I weight as [`check_weight`] wants it, src1 contiguous I32 indices, dst
/// contiguous F32 `[K, n_idx...]`.
fn check_get_rows(op: &OpDesc) -> Result<GetRowsPlan, Refusal> {
    let (ty, stages, k, n_rows, row_bytes) = check_weight(op)?;
    let idx = op.src1.ok_or(Refusal::MissingSource(1))?;
    if idx.ty != GGML_TYPE_I32 {
        return Err(Refusal::Shape("src1 (row indices) is not I32", idx.ne));
    }
    let ne = dims(idx.ne).ok_or(Refusal::Shape("src1 has an empty dim", idx.ne))?;
    let n_idx = ne
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or(Refusal::Overflow)?;
    if idx.nb != [4, 4 * ne[0], 4 * ne[0] * ne[1], 4 * ne[0] * ne[1] * ne[2]] {
        return Err(Refusal::Shape(
            "src1 (row indices) is not contiguous",
            idx.ne,
        ));
    }
    let d = op.dst;
    if d.ty != GGML_TYPE_F32 || dims(d.ne) != Some([k, ne[0], ne[1], ne[2]]) || ne[3] != 1 {
        return Err(Refusal::Shape("dst is not F32 [ne00, src1 ne0..2]", d.ne));
    }
    let nb1 = k.checked_mul(4).ok_or(Refusal::Overflow)?;
    nb1.checked_mul(n_idx).ok_or(Refusal::Overflow)?;
    if d.nb != [4, nb1, nb1 * ne[0], nb1 * ne[0] * ne[1]] {
        return Err(Refusal::Shape("dst is not contiguous", d.ne));
    }
    Ok(GetRowsPlan {
        ty,
        stages,
        k,
        n_rows,
        row_bytes,
        n_idx,
    })
}

fn check_mul_mat(op: &OpDesc) -> Result<MulMatPlan, Refusal> {
    let (ty, stages, k, n_rows, row_bytes) = check_weight(op)?;
    let x = op.src1.ok_or(Refusal::MissingSource(1))?;
    let d = op.dst;
    let weight_bytes = row_bytes.checked_mul(n_rows).ok_or(Refusal::Overflow)?;

    // activations: F32, ne10 == K, unit stride inside a column, f32-aligned strides
    if x.ty != GGML_TYPE_F32 {
        return Err(Refusal::Shape("src1 is not F32", x.ne));
    }
    let [x0, x1, x2, x3] = dims(x.ne).ok_or(Refusal::Shape("src1 has an empty dim", x.ne))?;
    if x0 != k {
        return Err(Refusal::Shape("src1 ne0 differs from src0 ne0", x.ne));
    }
    if x.nb[0] != 4 || x.nb[1..].iter().any(|&s| !s.is_multiple_of(4)) {
        return Err(Refusal::Shape("src1 rows are not contiguous f32", x.ne));
    }
    let strides = [x.nb[1] / 4, x.nb[2] / 4, x.nb[3] / 4];
    let mut extent = k;
    for (&n, &s) in [x1, x2, x3].iter().zip(&strides) {
        extent = (n - 1)
            .checked_mul(s)
            .and_then(|v| v.checked_add(extent))
            .ok_or(Refusal::Overflow)?;
    }
    extent.checked_mul(4).ok_or(Refusal::Overflow)?;

    // result: F32, [N, ne11, ne12, ne13], contiguous
    if d.ty != GGML_TYPE_F32 {
        return Err(Refusal::Shape("dst is not F32", d.ne));
    }
    if dims(d.ne) != Some([n_rows, x1, x2, x3]) {
        return Err(Refusal::Shape(
            "dst shape is not [src0 ne1, src1 ne1..3]",
            d.ne,
        ));
    }
    let n_cols = x1
        .checked_mul(x2)
        .and_then(|v| v.checked_mul(x3))
        .ok_or(Refusal::Overflow)?;
    let dst_len = n_rows.checked_mul(n_cols).ok_or(Refusal::Overflow)?;
    dst_len.checked_mul(4).ok_or(Refusal::Overflow)?;
    let nb1 = 4 * n_rows;
    if d.nb != [4, nb1, nb1 * x1, nb1 * x1 * x2] {
        return Err(Refusal::Shape("dst is not contiguous", d.ne));
    }

    Ok(MulMatPlan {
        ty,
        stages,
        k,
        n_rows,
        row_bytes,
        weight_bytes,
        cols: [x1, x2, x3],
        src1_strides: strides,
        src1_extent: extent,
        dst_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contiguous(ty: i32, ne: [i64; 4], elem: usize, blck: usize) -> TensorDesc {
        let nb0 = elem;
        let nb1 = nb0 * (ne[0] as usize / blck);
        let nb2 = nb1 * ne[1] as usize;
        let nb3 = nb2 * ne[2] as usize;
        TensorDesc {
            ty,
            ne,
            nb: [nb0, nb1, nb2, nb3],
            is_view: false,
            in_our_buft: false,
        }
    }

    fn mul_mat(ty: i32, k: i64, n: i64, cols: [i64; 3]) -> OpDesc {
        let stages = (ty - 63).max(1) as usize;
        let mut w = contiguous(ty, [k, n, 1, 1], 36 * stages, 256);
        w.in_our_buft = true;
        OpDesc {
            op: GGML_OP_MUL_MAT,
            dst: contiguous(GGML_TYPE_F32, [n, cols[0], cols[1], cols[2]], 4, 1),
            src0: Some(w),
            src1: Some(contiguous(
                GGML_TYPE_F32,
                [k, cols[0], cols[1], cols[2]],
                4,
                1,
            )),
        }
    }

    #[test]
    fn accepts_f2i_mul_mat() {
        let plan = match check(&mul_mat(65, 512, 6, [7, 2, 1])) {
            Ok(Supported::MulMat(p)) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (plan.k, plan.n_rows, plan.stages, plan.row_bytes),
            (512, 6, 2, 144)
        );
        assert_eq!(plan.n_cols(), 14);
        assert_eq!(plan.src1_strides, [512, 512 * 7, 512 * 14]);
        assert_eq!(plan.src1_offset(8), 512 + 512 * 7);
        assert_eq!(plan.src1_extent, 512 * 14);
        for ty in 64..=67 {
            assert!(check(&mul_mat(ty, 256, 2, [1, 1, 1])).is_ok());
        }
    }

    #[test]
    fn accepts_view_ops_only_besides_mul_mat() {
        let mut op = mul_mat(65, 256, 2, [1, 1, 1]);
        for v in [
            GGML_OP_NONE,
            GGML_OP_RESHAPE,
            GGML_OP_VIEW,
            GGML_OP_PERMUTE,
            GGML_OP_TRANSPOSE,
        ] {
            op.op = v;
            assert_eq!(check(&op), Ok(Supported::View));
        }
        op.op = 2; // ADD
        assert_eq!(check(&op), Err(Refusal::Op(2)));
    }

    #[test]
    fn refuses_what_it_does_not_handle() {
        let ok = mul_mat(65, 512, 6, [3, 1, 1]);
        let refuse = |f: &dyn Fn(&mut OpDesc)| {
            let mut op = ok;
            f(&mut op);
            check(&op).expect_err("should be refused")
        };
        assert_eq!(
            refuse(&|o| o.src0.as_mut().unwrap().ty = 8),
            Refusal::WeightType(8)
        );
        assert_eq!(
            refuse(&|o| o.src0.as_mut().unwrap().ty = 63),
            Refusal::WeightType(63)
        );
        assert_eq!(
            refuse(&|o| o.src0.as_mut().unwrap().in_our_buft = false),
            Refusal::WeightBuffer
        );
        assert_eq!(
            refuse(&|o| o.src0.as_mut().unwrap().is_view = true),
            Refusal::WeightView
        );
        assert_eq!(refuse(&|o| o.src1 = None), Refusal::MissingSource(1));
        // odd N, K not a multiple of 256, 3-D weight
        assert!(matches!(
            check(&mul_mat(65, 512, 5, [1, 1, 1])),
            Err(Refusal::Shape(..))
        ));
        assert!(matches!(
            check(&mul_mat(65, 384, 6, [1, 1, 1])),
            Err(Refusal::Shape(..))
        ));
        assert!(matches!(
            refuse(&|o| o.src0.as_mut().unwrap().ne[2] = 2),
            Refusal::Shape(..)
        ));
        // byte size does not match the type: wrong row stride
        assert!(matches!(
            refuse(&|o| o.src0.as_mut().unwrap().nb[1] += 36),
            Refusal::Shape(..)
        ));
        // src1 not F32, transposed src1, dst not contiguous, dst shape wrong
        assert!(matches!(
            refuse(&|o| o.src1.as_mut().unwrap().ty = 1),
            Refusal::Shape(..)
        ));
        assert!(matches!(
            refuse(&|o| o.src1.as_mut().unwrap().nb[0] = 2048),
            Refusal::Shape(..)
        ));
        assert!(matches!(refuse(&|o| o.dst.nb[1] = 64), Refusal::Shape(..)));
        assert!(matches!(refuse(&|o| o.dst.ne[0] = 4), Refusal::Shape(..)));
        assert!(matches!(
            refuse(&|o| o.src1.as_mut().unwrap().ne[1] = -3),
            Refusal::Shape(..)
        ));
    }

    /// A product without columns (llama.cpp's last layer of a micro-batch that needs no outputs,
    /// seen with multi-sequence batches) is accepted as a no-op, as long as the weight is ours.
    #[test]
    fn empty_products_are_accepted_as_no_ops() {
        let mut op = mul_mat(65, 512, 6, [3, 1, 1]);
        op.src1.as_mut().unwrap().ne[1] = 0;
        op.dst.ne[1] = 0;
        assert_eq!(check(&op), Ok(Supported::Empty));
        op.src0.as_mut().unwrap().in_our_buft = false;
        assert_eq!(check(&op), Err(Refusal::WeightBuffer));
        let mut op = mul_mat(65, 512, 6, [3, 1, 1]);
        op.dst.ne[2] = 0;
        assert_eq!(check(&op), Ok(Supported::Empty));
    }

    #[test]
    fn get_rows_of_an_f2i_weight() {
        let mut w = contiguous(66, [512, 6, 1, 1], 108, 256);
        w.in_our_buft = true;
        let op = OpDesc {
            op: GGML_OP_GET_ROWS,
            dst: contiguous(GGML_TYPE_F32, [512, 4, 2, 1], 4, 1),
            src0: Some(w),
            src1: Some(contiguous(GGML_TYPE_I32, [4, 2, 1, 1], 4, 1)),
        };
        assert_eq!(
            check(&op),
            Ok(Supported::GetRows(GetRowsPlan {
                ty: GgmlType::from_u32(66).unwrap(),
                stages: 3,
                k: 512,
                n_rows: 6,
                row_bytes: 216,
                n_idx: 8,
            }))
        );
        let mut bad = op;
        bad.src1.as_mut().unwrap().ty = GGML_TYPE_F32;
        assert!(matches!(check(&bad), Err(Refusal::Shape(..))));
        let mut bad = op;
        bad.dst.ne[0] = 256;
        assert!(matches!(check(&bad), Err(Refusal::Shape(..))));
        let mut bad = op;
        bad.src0.as_mut().unwrap().ty = 8;
        assert_eq!(check(&bad), Err(Refusal::WeightType(8)));
    }

    #[test]
    fn strided_src1_columns() {
        let mut op = mul_mat(64, 256, 2, [2, 3, 1]);
        // rows padded to 300 floats, planes to 1000 floats
        op.src1.as_mut().unwrap().nb = [4, 1200, 4000, 12000];
        let Ok(Supported::MulMat(plan)) = check(&op) else {
            panic!()
        };
        assert_eq!(plan.src1_strides, [300, 1000, 3000]);
        assert_eq!(plan.src1_extent, 300 + 2 * 1000 + 256);
        assert_eq!(plan.src1_offset(5), 300 + 2 * 1000);
        op.src1.as_mut().unwrap().nb[1] = 1202;
        assert!(check(&op).is_err());
    }
}
