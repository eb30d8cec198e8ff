//! `--imatrix`: loading a llama.cpp importance matrix and looking up each F2I weight's entry.

use std::path::Path;

use fairy2i_format::imatrix::Imatrix;
use fairy2i_format::PathContext;

use crate::cli::{QuantFlags, ScaleModeArg};
use crate::encode::F2iSettings;
use crate::error::{Error, Result};
use crate::report::Summary;

/// The imatrix of `--imatrix`, if given (checked against the scale mode).
pub fn load(flags: &QuantFlags) -> Result<Option<Imatrix>> {
    let Some(path) = flags.imatrix.as_deref() else {
        return Ok(None);
    };
    if flags.scale_mode == ScaleModeArg::Tensor {
        return Err(Error::Usage(
            "--imatrix needs --scale-mode block or joint (the paper-exact tensor mode has no \
             importance weighting)"
                .into(),
        ));
    }
    Ok(Some(Imatrix::load(path)?))
}

/// The file name recorded in `fairy2i.imatrix`.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The importance of weight `name` (rows of `k` inputs) written as `ty`: `None` for a type that
/// takes none (only F2I and the k-quants do, as in llama-quantize) and, counted as missing in the
/// summary, when the imatrix has no entry; an error naming the imatrix file if the entry does not fit.
fn lookup<'a>(
    imatrix: Option<&'a Imatrix>,
    path: Option<&Path>,
    ty: fairy2i_format::GgmlType,
    name: &str,
    k: usize,
    summary: &mut Summary,
) -> Result<Option<&'a [f32]>> {
    let weighted = ty.is_f2i() || fairy2i_format::blocks::can_quantize_weighted(ty);
    let (Some(m), Some(path), true) = (imatrix, path, weighted) else {
        return Ok(None);
    };
    let imp = m.importance(name, k).with_path(path)?;
    let entry = summary
        .imatrix
        .get_or_insert_with(|| (path.display().to_string(), 0, Vec::new()));
    match imp {
        Some(_) => entry.1 += 1,
        None => entry.2.push(name.to_string()),
    }
    Ok(imp)
}

/// The F2I settings of weight `name` (rows of `k` inputs) written as `ty`: the scale mode of `flags`,
/// bf16 rounding for a bf16 source, and its importance from `imatrix` (loaded by [`load`] from
/// `flags`) as [`lookup`] finds it.
pub fn settings<'a>(
    flags: &QuantFlags,
    imatrix: Option<&'a Imatrix>,
    ty: fairy2i_format::GgmlType,
    name: &str,
    k: usize,
    bf16_source: bool,
    summary: &mut Summary,
) -> Result<F2iSettings<'a>> {
    let importance = lookup(imatrix, flags.imatrix.as_deref(), ty, name, k, summary)?;
    Ok(F2iSettings {
        mode: flags.scale_mode.mode(),
        bf16_rounding: bf16_source,
        importance,
    })
}
