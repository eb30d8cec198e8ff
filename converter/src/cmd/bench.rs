//! Hidden `fairy2i bench-convert`: converts a Hugging Face folder to each requested type (into a temp
//! folder, deleted afterwards) and prints a table of input MB/s. Pair it with `gguf-to-hf` to bench
//! on a real model when only a quantized GGUF is available.

use crate::cli::{BenchConvertArgs, ConvertArgs, QuantFlags, ScaleModeArg, StdType};
use crate::error::{IoContext, Result};

/// Runs `bench-convert`.
pub fn run(args: &BenchConvertArgs) -> Result<()> {
    super::init_threads(args.threads)?;
    let dir = args.model_dir.as_path();
    let has_tokenizer =
        dir.join("tokenizer.json").is_file() || dir.join("tokenizer.model").is_file();
    let tmp = tempfile::tempdir().at(std::env::temp_dir())?;
    super::print_out(&format!(
        "threads: {}\n{:<8} {:>12} {:>9} {:>9}\n",
        rayon::current_num_threads(),
        "type",
        "input MB",
        "seconds",
        "MB/s"
    ))?;
    for &ty in &args.types {
        let output = tmp.path().join("bench.gguf");
        let convert = ConvertArgs {
            model_dir: dir.to_path_buf(),
            output: output.clone(),
            no_tokenizer: !has_tokenizer,
            quant: QuantFlags {
                out_type: ty,
                embd_type: None,
                fallback: StdType::Q8_0,
                scale_mode: ScaleModeArg::Tensor,
                imatrix: None,
                threads: None,
                quiet: true,
            },
        };
        let summary = super::convert::convert(&convert)?;
        let (bytes, secs) = summary.throughput();
        let name = ty.ggml().name();
        super::print_out(&format!(
            "{:<8} {:>12.1} {:>9.2} {:>9.1}\n",
            name,
            bytes as f64 / 1e6,
            secs,
            bytes as f64 / 1e6 / secs.max(1e-9)
        ))?;
        std::fs::remove_file(&output).at(&output)?;
    }
    Ok(())
}
