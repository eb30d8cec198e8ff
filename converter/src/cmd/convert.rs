//! `fairy2i convert`: a Hugging Face folder to GGUF. With a standard `--type` the file is what
//! llama.cpp's `convert_hf_to_gguf.py --outtype` writes, byte for byte; with an F2I type the weight
//! matrices become F2I and `fairy2i.*` keys are added.

use std::path::Path;

use fairy2i_format::gguf::{keys, GgufWriter, Metadata, TensorSpec, Value};
use fairy2i_format::GgmlType;

use crate::arch::{llama, Arch, Mapped, Role};
use crate::cli::ConvertArgs;
use crate::encode::{encode, Rows};
use crate::error::{Error, FormatContext, Result};
use crate::hf::config::{sampling_kvs, HfConfig};
use crate::hf::naming::naming;
use crate::hf::safetensors::{Checkpoint, SrcDtype, SrcTensor};
use crate::plan::{self, Choice, Options, PermutedHeads};
use crate::report::{Fallback, Progress, Summary};

/// One tensor to write.
struct Job<'a> {
    name: String,
    src: &'a SrcTensor,
    /// ggml dims.
    dims: Vec<u64>,
    ty: GgmlType,
    /// Heads of the llama Q/K permutation to apply.
    permute: Option<u64>,
}

/// The `general.quantization_version` llama.cpp writes.
const QUANTIZATION_VERSION: u32 = 2;

/// Runs `convert`.
pub fn run(args: &ConvertArgs) -> Result<()> {
    super::init_threads(args.quant.threads)?;
    convert(args).map(|_| ())
}

/// Converts, returning the summary (input bytes, time, types).
pub fn convert(args: &ConvertArgs) -> Result<Summary> {
    let dir = args.model_dir.as_path();
    super::check_output(&args.output)?;
    let imatrix = crate::imatrix::load(&args.quant)?;
    let imatrix_path = args.quant.imatrix.as_deref();
    let cfg = HfConfig::load(dir)?;
    if !args.no_tokenizer
        && !dir.join("tokenizer.json").is_file()
        && !dir.join("tokenizer.model").is_file()
    {
        return Err(Error::TokenizerMissing {
            path: dir.to_path_buf(),
        });
    }
    let ckpt = Checkpoint::open(dir)?;
    let arch = cfg.arch;
    let block_count = cfg.u64("num_hidden_layers")?;
    let n_head = cfg.u64("num_attention_heads")?;
    let n_head_kv = cfg.u64("num_key_value_heads")?;

    // Map and check every tensor.
    let mut mapped: Vec<(Mapped, &SrcTensor)> = Vec::new();
    for t in &ckpt.tensors {
        let m = match arch.map(&t.name) {
            None => {
                return Err(Error::UnmappedTensor {
                    path: ckpt.path_of(t).to_path_buf(),
                    tensor: t.name.clone(),
                    arch: arch.name(),
                })
            }
            Some(None) => continue,
            Some(Some(m)) => m,
        };
        if m.layer.is_some_and(|l| l >= block_count) {
            return Err(Error::UnmappedTensor {
                path: ckpt.path_of(t).to_path_buf(),
                tensor: t.name.clone(),
                arch: arch.name(),
            });
        }
        let expected = arch.expected_shape(&m, &cfg)?;
        if expected != t.shape {
            return Err(Error::ShapeMismatch {
                path: ckpt.path_of(t).to_path_buf(),
                tensor: t.name.clone(),
                expected,
                got: t.shape.clone(),
            });
        }
        mapped.push((m, t));
    }
    let has = |role: Role| mapped.iter().any(|(m, _)| m.role == role && !m.bias);
    if !has(Role::TokenEmbd) {
        return Err(Error::TensorMissing {
            path: dir.to_path_buf(),
            tensor: "model.embed_tokens.weight".into(),
        });
    }
    let tied = !has(Role::Output);
    if tied && !cfg.tied_embeddings() {
        return Err(Error::TensorMissing {
            path: dir.to_path_buf(),
            tensor: "lm_head.weight".into(),
        });
    }

    // Plan the types.
    let out_ty = args.quant.out_type.ggml();
    let opts = Options {
        out: out_ty,
        embd: args.quant.embd_type.unwrap_or(GgmlType::Q8_0),
        fallback: args.quant.fallback.ggml(),
    };
    let heads = arch
        .permutes_qk()
        .then_some(PermutedHeads { n_head, n_head_kv });
    let mut summary = Summary::new();
    let mut jobs: Vec<Job<'_>> = Vec::new();
    for (m, src) in &mapped {
        push_job(
            &mut jobs,
            &mut summary,
            m.name.clone(),
            src,
            m,
            &opts,
            heads,
            arch,
            n_head,
            n_head_kv,
        );
        if tied && out_ty.is_f2i() && m.role == Role::TokenEmbd {
            // F2I quantizes the output projection: write it explicitly.
            let out_m = Mapped {
                name: "output.weight".into(),
                layer: None,
                role: Role::Output,
                bias: false,
            };
            push_job(
                &mut jobs,
                &mut summary,
                out_m.name.clone(),
                src,
                &out_m,
                &opts,
                heads,
                arch,
                n_head,
                n_head_kv,
            );
        }
    }
    // Parameters as the reference counts them (without a synthesized output.weight).
    let total_params: u64 = mapped.iter().map(|(_, t)| t.n_elements()).sum();

    // Metadata, in the reference order.
    let f2i_ty = jobs.iter().map(|j| j.ty).find(|t| t.is_f2i());
    let file_type = plan::file_type(out_ty).unwrap_or(0);
    let mut md = Metadata::new();
    md.set(keys::GENERAL_ARCHITECTURE, Value::str(arch.name()));
    md.set("general.type", Value::str("model"));
    for (k, v) in sampling_kvs(dir) {
        md.set(k, v);
    }
    let folder = folder_name(dir);
    let name_or_path = cfg
        .params
        .get("_name_or_path")
        .and_then(serde_json::Value::as_str);
    for (k, v) in naming(&folder, name_or_path, total_params).kvs() {
        md.set(k, Value::str(v));
    }
    for (k, v) in arch.hparam_kvs(&cfg, file_type)? {
        md.set(k, v);
    }
    md.set(
        keys::GENERAL_QUANTIZATION_VERSION,
        Value::U32(QUANTIZATION_VERSION),
    );
    if let Some(t) = f2i_ty {
        set_fairy2i_keys(&mut md, t, args.quant.scale_mode.mode().name(), "hf");
        if let Some(p) = imatrix_path {
            md.set(
                keys::FAIRY2I_IMATRIX,
                Value::str(crate::imatrix::file_name(p)),
            );
        }
    }
    if !args.no_tokenizer {
        for (k, v) in crate::hf::tokenizer_kvs(dir, &cfg.params, arch)? {
            md.set(k, v);
        }
    }

    // Write.
    let specs: Vec<TensorSpec> = jobs
        .iter()
        .map(|j| TensorSpec {
            name: j.name.clone(),
            dims: j.dims.clone(),
            ty: j.ty,
        })
        .collect();
    let out_path = args.output.as_path();
    let writer = GgufWriter::create(out_path, &md, specs).at_file(out_path)?;
    let total_in: u64 = jobs.iter().map(|j| ckpt.data(j.src).len() as u64).sum();
    let progress = Progress::new(total_in, jobs.len(), args.quant.quiet);
    let n_jobs = jobs.len();
    super::pipelined(writer, out_path, |send| {
        for (i, job) in jobs.iter().enumerate() {
            progress.start(i, n_jobs, &job.name, job.ty);
            let data = ckpt.data(job.src);
            let shape = &job.src.shape;
            let (ne0, n_rows) = match (shape.len(), job.permute.is_some()) {
                (1, true) => (1, shape.first().copied().unwrap_or(1)),
                _ => (
                    shape.last().copied().unwrap_or(1),
                    shape.iter().rev().skip(1).product::<u64>(),
                ),
            };
            let (ne0, n_rows) = (to_usize(ne0, job, &ckpt)?, to_usize(n_rows, job, &ckpt)?);
            let perm = match job.permute {
                Some(h) => Some(llama::qk_permutation(n_rows, h as usize).ok_or_else(|| {
                    Error::ShapeMismatch {
                        path: ckpt.path_of(job.src).to_path_buf(),
                        tensor: job.src.name.clone(),
                        expected: vec![h, 2],
                        got: job.src.shape.clone(),
                    }
                })?),
                None => None,
            };
            let rows = Rows {
                data,
                dtype: job.src.dtype,
                ne0,
                n_rows,
                perm: perm.as_deref(),
            };
            let settings = crate::imatrix::settings(
                &args.quant,
                imatrix.as_ref(),
                job.ty,
                &job.name,
                ne0,
                job.src.dtype == SrcDtype::BF16,
                &mut summary,
            )?;
            let bytes = encode(&rows, job.ty, settings)
                .map_err(|e| e.in_tensor(&job.name))
                .at_file(ckpt.path_of(job.src))?;
            summary.add(
                job.ty,
                job.src.n_elements(),
                bytes.len() as u64,
                data.len() as u64,
            );
            if !send(bytes) {
                break;
            }
            progress.done(data.len() as u64);
        }
        Ok(())
    })?;
    progress.finish();
    if !args.quant.quiet {
        super::print_err(&summary.render(out_path));
    }
    Ok(summary)
}

fn to_usize(v: u64, job: &Job<'_>, ckpt: &Checkpoint) -> Result<usize> {
    usize::try_from(v).map_err(|_| Error::ShapeMismatch {
        path: ckpt.path_of(job.src).to_path_buf(),
        tensor: job.src.name.clone(),
        expected: vec![],
        got: job.src.shape.clone(),
    })
}

#[allow(clippy::too_many_arguments)]
fn push_job<'a>(
    jobs: &mut Vec<Job<'a>>,
    summary: &mut Summary,
    name: String,
    src: &'a SrcTensor,
    m: &Mapped,
    opts: &Options,
    heads: Option<PermutedHeads>,
    arch: Arch,
    n_head: u64,
    n_head_kv: u64,
) {
    let dims: Vec<u64> = src.shape.iter().rev().copied().collect();
    let choice = plan::choose(&name, &dims, opts, heads);
    let ty = choice.ty(GgmlType::F32);
    if let Choice::Fallback { ty, wanted, reason } = &choice {
        summary.fallbacks.push(Fallback {
            name: name.clone(),
            wanted: *wanted,
            used: *ty,
            reason: reason.clone(),
        });
    }
    let permute = if arch.permutes_qk() {
        match m.role {
            Role::AttnQ => Some(n_head),
            Role::AttnK => Some(n_head_kv),
            _ => None,
        }
    } else {
        None
    };
    jobs.push(Job {
        name,
        src,
        dims,
        ty,
        permute,
    });
}

/// Sets the `fairy2i.*` keys for a file whose dominant F2I type is `ty`.
pub fn set_fairy2i_keys(md: &mut Metadata, ty: GgmlType, scale_mode: &str, source: &str) {
    let stages = ty.f2i_stages().unwrap_or(0) as u32;
    md.set(
        keys::FAIRY2I_FORMAT_VERSION,
        Value::U32(keys::F2I_FORMAT_VERSION),
    );
    md.set(keys::FAIRY2I_STAGES, Value::U32(stages));
    md.set(keys::FAIRY2I_SCALE_MODE, Value::str(scale_mode));
    md.set(keys::FAIRY2I_SOURCE, Value::str(source));
}

/// The folder's name as Python's `Path.name` gives it (resolving `.` and `..`).
fn folder_name(dir: &Path) -> String {
    match dir.file_name() {
        Some(n)
            if dir
                .components()
                .next_back()
                .is_some_and(|c| matches!(c, std::path::Component::Normal(_))) =>
        {
            n.to_string_lossy().into_owned()
        }
        _ => dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default(),
    }
}
