//! `fairy2i quantize`: a GGUF file (any architecture, any type `format::convert` reads, F2I
//! included) to another type, with the tensor selection of `convert`. KVs are copied;
//! `general.file_type` and the `fairy2i.*` keys are updated.
//!
//! `llama` files store attn_q/attn_k rows already permuted; for even head counts the F2I row pairing
//! commutes with that permutation (the result equals quantizing the Hugging Face matrix and
//! permuting), for odd head counts those tensors take the fallback type.

use std::collections::HashMap;

use fairy2i_format::gguf::{keys, GgufWriter, MappedGguf, Metadata, TensorInfo, TensorSpec, Value};
use fairy2i_format::{convert, GgmlType};

use crate::arch::Arch;
use crate::cli::QuantizeArgs;
use crate::encode::{encode, Rows};
use crate::error::{Error, FormatContext, Result};
use crate::hf::safetensors::SrcDtype;
use crate::plan::{self, Choice, PermutedHeads};
use crate::recipe::{Category, Position, Rules, Source};
use crate::report::{Fallback, Progress, Summary, TensorLine};

/// One tensor to write: its source tensor in the input, and the type it gets.
struct Job<'a> {
    name: String,
    src: &'a TensorInfo,
    ty: GgmlType,
}

/// The name `fairy2i.source` gives a llama ftype (llama-quantize's spelling, lower case).
pub fn ftype_name(ftype: u64) -> String {
    let known = match ftype {
        0 => "f32",
        1 => "f16",
        2 => "q4_0",
        3 => "q4_1",
        7 => "q8_0",
        8 => "q5_0",
        9 => "q5_1",
        10 => "q2_k",
        11 => "q3_k_s",
        12 => "q3_k_m",
        13 => "q3_k_l",
        14 => "q4_k_s",
        15 => "q4_k_m",
        16 => "q5_k_s",
        17 => "q5_k_m",
        18 => "q6_k",
        32 => "bf16",
        36 => "tq1_0",
        37 => "tq2_0",
        f => match plan::F2I_FTYPES.iter().position(|&x| u64::from(x) == f) {
            Some(i) => return format!("f2i_w{}", i + 1),
            None => return format!("ftype_{f}"),
        },
    };
    known.to_string()
}

/// The F2I type holding the most weights (`fairy2i.stages` names it).
fn dominant_f2i(jobs: &[Job<'_>]) -> Option<GgmlType> {
    let mut per_type: Vec<(GgmlType, u64)> = Vec::new();
    for j in jobs.iter().filter(|j| j.ty.is_f2i()) {
        match per_type.iter_mut().find(|(t, _)| *t == j.ty) {
            Some((_, n)) => *n += j.src.n_elements(),
            None => per_type.push((j.ty, j.src.n_elements())),
        }
    }
    per_type
        .into_iter()
        .max_by_key(|&(t, n)| (n, std::cmp::Reverse(t.f2i_stages())))
        .map(|(t, _)| t)
}

/// Each weight's place among the weights of its category, in llama.cpp's tensor order (by the
/// layer number of `blk.N.`, names without one first, then by name): llama-quantize counts its
/// `i_attention_wv` / `i_ffn_down` in that order.
fn positions<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'a [u64])>,
) -> HashMap<String, Position> {
    let layer = |name: &str| -> i64 {
        name.strip_prefix("blk.")
            .and_then(|r| r.split_once('.'))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or(-1)
    };
    let mut by_category: HashMap<Category, Vec<&str>> = HashMap::new();
    for (name, dims) in tensors {
        if !plan::is_always_f32(name, dims) {
            by_category
                .entry(Category::of(name))
                .or_default()
                .push(name);
        }
    }
    let mut out = HashMap::new();
    for names in by_category.values_mut() {
        names.sort_by(|a, b| (layer(a), *a).cmp(&(layer(b), *b)));
        let count = names.len();
        for (index, name) in names.iter().enumerate() {
            out.insert(name.to_string(), Position { index, count });
        }
    }
    out
}

/// Query heads per key/value head (`<arch>.attention.head_count` / `head_count_kv`), 1 when the
/// file does not say (or gives per-layer arrays).
fn n_gqa(md: &Metadata, arch: &str) -> u64 {
    let n_head = md.get_u64(&format!("{arch}.attention.head_count"));
    let n_kv = md
        .get_u64(&format!("{arch}.attention.head_count_kv"))
        .or(n_head);
    match (n_head, n_kv) {
        (Some(h), Some(kv)) if kv > 0 => h / kv,
        _ => 1,
    }
}

/// Runs `quantize`.
pub fn run(args: &QuantizeArgs) -> Result<()> {
    super::init_threads(args.quant.threads)?;
    let in_path = args.input.as_path();
    let out_path = match (&args.output, args.dry_run) {
        (_, true) => None,
        (Some(p), false) => Some(p.as_path()),
        (None, false) => return Err(Error::OutputMissing),
    };
    if let Some(out_path) = out_path {
        super::check_output(out_path)?;
        if let (Ok(a), Ok(b)) = (in_path.canonicalize(), out_path.canonicalize()) {
            if a == b {
                return Err(Error::OutputIsInput {
                    path: out_path.to_path_buf(),
                });
            }
        }
    }
    let imatrix = crate::imatrix::load(&args.quant)?;
    let imatrix_path = args.quant.imatrix.as_deref();
    let mapped = MappedGguf::open(in_path)?;
    let g = mapped.parse()?;
    let arch = g
        .metadata
        .get_str(keys::GENERAL_ARCHITECTURE)
        .ok_or_else(|| Error::GgufKey {
            path: in_path.to_path_buf(),
            key: keys::GENERAL_ARCHITECTURE.into(),
            problem: "is missing or not a string",
        })?
        .to_string();
    let heads = if Arch::from_gguf(&arch).is_some_and(Arch::permutes_qk) {
        let n_head = g
            .metadata
            .get_u64("llama.attention.head_count")
            .ok_or_else(|| Error::GgufKey {
                path: in_path.to_path_buf(),
                key: "llama.attention.head_count".into(),
                problem: "is missing or not an integer",
            })?;
        let n_head_kv = g
            .metadata
            .get_u64("llama.attention.head_count_kv")
            .unwrap_or(n_head);
        Some(PermutedHeads { n_head, n_head_kv })
    } else {
        None
    };

    let out_ty = args.quant.out_type.ggml();
    let fallback = args.quant.fallback.ggml();
    let rules = Rules {
        base: out_ty,
        recipe: args.recipe(),
        output: args.output_type,
        embd: args.quant.embd_type,
        patterns: &args.tensor_type,
        n_gqa: n_gqa(&g.metadata, &arch),
    };
    let mut summary = Summary::new();
    let decide = |name: &str, dims: &[u64], (wanted, source): (GgmlType, Source)| {
        (
            plan::choose_type(name, dims, wanted, fallback, heads),
            source,
        )
    };
    // A model without output.weight ties it to token_embd: token_embd then takes output.weight's
    // type, and output.weight is written separately only when its type differs (an F2I one, which
    // token_embd cannot have, or explicit flags that disagree).
    let embd = g.tensors.iter().find(|t| t.name == "token_embd.weight");
    let tied_output = match embd {
        Some(t) if !g.tensors.iter().any(|t| t.name == "output.weight") => {
            Some(decide("output.weight", &t.dims, rules.output()))
        }
        _ => None,
    };
    let tied_ty = tied_output.as_ref().map(|(c, _)| c.ty(GgmlType::F32));
    let embd_plan = embd.map(|t| decide(&t.name, &t.dims, rules.token_embd(tied_ty)));
    let separate_output = match (&tied_output, &embd_plan) {
        (Some((o, _)), Some((e, _))) => o.ty(GgmlType::F32) != e.ty(GgmlType::F32),
        _ => false,
    };
    let positions = positions(g.tensors.iter().map(|t| (t.name.as_str(), &t.dims[..])));
    let mut jobs: Vec<Job<'_>> = Vec::new();
    for t in &g.tensors {
        let mut push = |name: &str, (choice, source): (Choice, Source)| {
            let note = match &choice {
                Choice::Keep => String::new(),
                Choice::To(_) => source.to_string(),
                Choice::Fallback { ty, wanted, reason } => {
                    summary.fallbacks.push(Fallback {
                        name: name.to_string(),
                        wanted: *wanted,
                        used: *ty,
                        reason: reason.clone(),
                    });
                    format!("fallback, {wanted} wanted by {source}: {reason}")
                }
            };
            let ty = choice.ty(t.ty);
            summary.tensors.push(TensorLine {
                name: name.to_string(),
                ty,
                note,
            });
            jobs.push(Job {
                name: name.to_string(),
                src: t,
                ty,
            });
        };
        if t.name == "token_embd.weight" {
            if let Some(p) = embd_plan.clone() {
                push(&t.name, p);
            }
            if separate_output {
                if let Some(p) = tied_output.clone() {
                    push("output.weight", p);
                }
            }
            continue;
        }
        let wanted = if t.name == "output.weight" {
            rules.output()
        } else {
            let pos = positions.get(&t.name).copied().unwrap_or_default();
            rules.weight(&t.name, pos)
        };
        push(&t.name, decide(&t.name, &t.dims, wanted));
    }

    // Metadata: the input's, with file type and fairy2i.* updated (fairy2i.* right after
    // general.quantization_version, or at the end).
    let f2i_ty = dominant_f2i(&jobs);
    let source = format!(
        "gguf:{}",
        g.metadata
            .get_u64(keys::GENERAL_FILE_TYPE)
            .map(ftype_name)
            .unwrap_or_else(|| "unknown".into())
    );
    let mut fairy: Metadata = Metadata::new();
    if let Some(t) = f2i_ty {
        super::convert::set_fairy2i_keys(
            &mut fairy,
            t,
            args.quant.scale_mode.mode().name(),
            &source,
        );
        if let Some(p) = imatrix_path {
            fairy.set(
                keys::FAIRY2I_IMATRIX,
                Value::str(crate::imatrix::file_name(p)),
            );
        }
    }
    let mut md = Metadata::new();
    let mut placed = false;
    for (k, v) in g.metadata.iter() {
        if k.starts_with("fairy2i.") {
            continue;
        }
        md.set(k, v.clone());
        if k == keys::GENERAL_QUANTIZATION_VERSION {
            for (fk, fv) in fairy.iter() {
                md.set(fk, fv.clone());
            }
            placed = true;
        }
    }
    if !placed {
        for (fk, fv) in fairy.iter() {
            md.set(fk, fv.clone());
        }
    }
    md.set(
        keys::GENERAL_FILE_TYPE,
        Value::U32(plan::file_type(out_ty).unwrap_or(0)),
    );

    let specs: Vec<TensorSpec> = jobs
        .iter()
        .map(|j| TensorSpec {
            name: j.name.clone(),
            dims: j.src.dims.clone(),
            ty: j.ty,
        })
        .collect();
    let Some(out_path) = out_path else {
        for j in &jobs {
            let size = if j.ty == j.src.ty {
                j.src.size
            } else {
                j.ty.tensor_size(&j.src.dims).at_file(in_path)?
            };
            summary.add(j.ty, j.src.n_elements(), size, j.src.size);
        }
        if !args.quant.quiet {
            eprint!("{}", summary.render_plan());
        }
        return Ok(());
    };
    let writer = GgufWriter::create_versioned(out_path, g.version, &md, specs).at_file(out_path)?;
    let total_in: u64 = jobs.iter().map(|j| j.src.size).sum();
    let progress = Progress::new(total_in, jobs.len(), args.quant.quiet);
    let n_jobs = jobs.len();
    super::pipelined(writer, out_path, |send| {
        for (i, job) in jobs.iter().enumerate() {
            progress.start(i, n_jobs, &job.name, job.ty);
            let data = g.tensor_data(job.src);
            let n = job.src.n_elements();
            if job.ty == job.src.ty {
                summary.add(job.ty, n, data.len() as u64, data.len() as u64);
                if !send(data.to_vec()) {
                    break;
                }
            } else {
                let in_tensor = |e: fairy2i_format::Error| e.in_tensor(&job.name);
                let w = convert::tensor_to_f32(job.src.ty, &job.src.dims, data)
                    .map_err(in_tensor)
                    .at_file(in_path)?;
                let ne0 = usize::try_from(job.src.ne0()).unwrap_or(usize::MAX);
                let n_rows = usize::try_from(job.src.n_rows()).unwrap_or(usize::MAX);
                let rows = Rows {
                    data: bytemuck::cast_slice(&w),
                    dtype: SrcDtype::F32,
                    ne0,
                    n_rows,
                    perm: None,
                };
                let settings = crate::imatrix::settings(
                    &args.quant,
                    imatrix.as_ref(),
                    job.ty,
                    &job.name,
                    ne0,
                    job.src.ty == GgmlType::BF16,
                    &mut summary,
                )?;
                let bytes = encode(&rows, job.ty, settings)
                    .map_err(in_tensor)
                    .at_file(in_path)?;
                summary.add(job.ty, n, bytes.len() as u64, data.len() as u64);
                if !send(bytes) {
                    break;
                }
            }
            progress.done(data.len() as u64);
        }
        Ok(())
    })?;
    progress.finish();
    if !args.quant.quiet {
        super::print_err(&summary.render(out_path));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_llama_cpp_layer_order() {
        // A file in lexical order (blk.10 before blk.2), as SmolLM2's GGUF is.
        let names = [
            "token_embd.weight",
            "blk.0.ffn_down.weight",
            "blk.1.ffn_down.weight",
            "blk.10.ffn_down.weight",
            "blk.2.ffn_down.weight",
            "blk.2.ffn_norm.weight",
            "blk.2.attn_v.weight",
        ];
        let dims: Vec<Vec<u64>> = names
            .iter()
            .map(|n| {
                if n.ends_with("norm.weight") {
                    vec![8]
                } else {
                    vec![8, 8]
                }
            })
            .collect();
        let p = positions(names.iter().copied().zip(dims.iter().map(|d| &d[..])));
        let at = |n: &str| p.get(n).map(|q| (q.index, q.count));
        assert_eq!(at("blk.2.ffn_down.weight"), Some((2, 4)));
        assert_eq!(at("blk.10.ffn_down.weight"), Some((3, 4)));
        assert_eq!(at("blk.2.attn_v.weight"), Some((0, 1)));
        assert_eq!(at("blk.2.ffn_norm.weight"), None);
    }
}
