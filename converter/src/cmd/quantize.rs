//! `fairy2i quantize`: a GGUF file (any architecture, any type `format::convert` reads, F2I
//! included) to another type, with the tensor selection of `convert`. KVs are copied;
//! `general.file_type` and the `fairy2i.*` keys are updated.
//!
//! `llama` files store attn_q/attn_k rows already permuted; for even head counts the F2I row pairing
//! commutes with that permutation (the result equals quantizing the Hugging Face matrix and
//! permuting), for odd head counts those tensors take the fallback type.

use fairy2i_format::gguf::{keys, GgufWriter, MappedGguf, Metadata, TensorInfo, TensorSpec, Value};
use fairy2i_format::{convert, GgmlType};

use crate::arch::Arch;
use crate::cli::QuantizeArgs;
use crate::encode::{encode, Rows};
use crate::error::{Error, FormatContext, Result};
use crate::hf::safetensors::SrcDtype;
use crate::plan::{self, Choice, Options, PermutedHeads};
use crate::report::{Fallback, Progress, Summary};

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

/// Runs `quantize`.
pub fn run(args: &QuantizeArgs) -> Result<()> {
    super::init_threads(args.quant.threads)?;
    let in_path = args.input.as_path();
    let out_path = args.output.as_path();
    super::check_output(&args.output)?;
    let imatrix = crate::imatrix::load(&args.quant)?;
    let imatrix_path = args.quant.imatrix.as_deref();
    if let (Ok(a), Ok(b)) = (in_path.canonicalize(), out_path.canonicalize()) {
        if a == b {
            return Err(Error::OutputIsInput {
                path: out_path.to_path_buf(),
            });
        }
    }
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
    let opts = Options {
        out: out_ty,
        embd: args.quant.embd_type.ggml(),
        fallback: args.quant.fallback.ggml(),
    };
    let mut summary = Summary::new();
    let tied = out_ty.is_f2i() && !g.tensors.iter().any(|t| t.name == "output.weight");
    let mut jobs: Vec<Job<'_>> = Vec::new();
    for t in &g.tensors {
        let mut plan_one = |name: &str| {
            let choice = plan::choose(name, &t.dims, &opts, heads);
            if let Choice::Fallback { ty, wanted, reason } = &choice {
                summary.fallbacks.push(Fallback {
                    name: name.to_string(),
                    wanted: *wanted,
                    used: *ty,
                    reason: reason.clone(),
                });
            }
            jobs.push(Job {
                name: name.to_string(),
                src: t,
                ty: choice.ty(t.ty),
            });
        };
        plan_one(&t.name);
        if tied && t.name == "token_embd.weight" {
            plan_one("output.weight");
        }
    }

    // Metadata: the input's, with file type and fairy2i.* updated (fairy2i.* right after
    // general.quantization_version, or at the end).
    let f2i_ty = jobs.iter().map(|j| j.ty).find(|t| t.is_f2i());
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
