//! Command-line definition (clap derive). Each flag is defined once, here; the doc comments are the
//! help text.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use fairy2i_format::GgmlType;

/// fairy2i: Fairy2i complex 2-bit quantization (F2I tensor types) for the llama.cpp ecosystem.
#[derive(Debug, Parser)]
#[command(name = "fairy2i", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Convert a Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer) to GGUF.
    Convert(ConvertArgs),
    /// Re-quantize a GGUF file (any architecture) to another type.
    Quantize(QuantizeArgs),
    /// Print a GGUF file's metadata and tensor table.
    Inspect(InspectArgs),
    /// Dequantize a GGUF file into a Hugging Face style folder (bf16 safetensors, config.json), for benchmarks.
    #[command(hide = true)]
    GgufToHf(GgufToHfArgs),
    /// Convert a Hugging Face folder to each type into a temp file and print MB/s of input.
    #[command(hide = true)]
    BenchConvert(BenchConvertArgs),
}

/// The output types of `convert` and `quantize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutType {
    /// Fairy2i, 1 stage (1.125 bpw).
    #[value(name = "f2i_w1")]
    F2iW1,
    /// Fairy2i, 2 stages (2.25 bpw).
    #[value(name = "f2i_w2")]
    F2iW2,
    /// Fairy2i, 3 stages (3.375 bpw).
    #[value(name = "f2i_w3")]
    F2iW3,
    /// Fairy2i, 4 stages (4.5 bpw).
    #[value(name = "f2i_w4")]
    F2iW4,
    /// 32-bit float.
    #[value(name = "f32")]
    F32,
    /// 16-bit float.
    #[value(name = "f16")]
    F16,
    /// bfloat16.
    #[value(name = "bf16")]
    Bf16,
    /// 8-bit, 32-element blocks.
    #[value(name = "q8_0")]
    Q8_0,
}

impl OutType {
    /// The ggml type of the weights this out type quantizes.
    pub fn ggml(self) -> GgmlType {
        match self {
            OutType::F2iW1 => GgmlType::F2I_W1,
            OutType::F2iW2 => GgmlType::F2I_W2,
            OutType::F2iW3 => GgmlType::F2I_W3,
            OutType::F2iW4 => GgmlType::F2I_W4,
            OutType::F32 => GgmlType::F32,
            OutType::F16 => GgmlType::F16,
            OutType::Bf16 => GgmlType::BF16,
            OutType::Q8_0 => GgmlType::Q8_0,
        }
    }
}

/// Standard types for token embeddings and fallbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StdType {
    /// 8-bit, 32-element blocks.
    #[value(name = "q8_0")]
    Q8_0,
    /// 4-bit, 32-element blocks.
    #[value(name = "q4_0")]
    Q4_0,
    /// 16-bit float.
    #[value(name = "f16")]
    F16,
    /// bfloat16.
    #[value(name = "bf16")]
    Bf16,
    /// 32-bit float.
    #[value(name = "f32")]
    F32,
}

impl StdType {
    /// The ggml type.
    pub fn ggml(self) -> GgmlType {
        match self {
            StdType::Q8_0 => GgmlType::Q8_0,
            StdType::Q4_0 => GgmlType::Q4_0,
            StdType::F16 => GgmlType::F16,
            StdType::Bf16 => GgmlType::BF16,
            StdType::F32 => GgmlType::F32,
        }
    }
}

/// How F2I scales are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScaleModeArg {
    /// Paper-exact: the official quantizer's per-tensor scales.
    #[value(name = "tensor")]
    Tensor,
    /// Least-squares scales per block and stage (same format, much lower error).
    #[value(name = "block")]
    Block,
    /// Block, then all stages of each block refined jointly (codes and scales; lowest error, slower).
    #[value(name = "joint")]
    Joint,
}

impl ScaleModeArg {
    /// The format crate's mode.
    pub fn mode(self) -> fairy2i_format::f2i::ScaleMode {
        match self {
            ScaleModeArg::Tensor => fairy2i_format::f2i::ScaleMode::Tensor,
            ScaleModeArg::Block => fairy2i_format::f2i::ScaleMode::Block,
            ScaleModeArg::Joint => fairy2i_format::f2i::ScaleMode::Joint,
        }
    }
}

/// Options shared by `convert` and `quantize`.
#[derive(Debug, Clone, clap::Args)]
pub struct QuantFlags {
    /// Output type of the weight matrices.
    #[arg(long = "type", value_enum, default_value = "f2i_w2")]
    pub out_type: OutType,
    /// Type of token_embd with an F2I --type (it is read row by row, so it stays a standard type).
    #[arg(long, value_enum, default_value = "q8_0")]
    pub embd_type: StdType,
    /// Type of matrices F2I cannot hold (K % 256 != 0, odd N, odd head count for permuted Q/K).
    #[arg(long, value_enum, default_value = "q8_0")]
    pub fallback: StdType,
    /// How F2I scales are chosen.
    #[arg(long, value_enum, default_value = "tensor")]
    pub scale_mode: ScaleModeArg,
    /// llama.cpp importance matrix (GGUF or legacy .dat from llama-imatrix, same tensor names as the
    /// output): block and joint modes minimise the error weighted by it. Needs --scale-mode block|joint.
    #[arg(long, value_name = "FILE")]
    pub imatrix: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// No progress bars or summary.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `fairy2i convert`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConvertArgs {
    /// Hugging Face model folder (config.json, model*.safetensors, tokenizer files).
    pub model_dir: PathBuf,
    /// Output GGUF file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Convert without tokenizer metadata (the file will not load in llama.cpp; for benchmarks).
    #[arg(long, hide = true)]
    pub no_tokenizer: bool,
    #[command(flatten)]
    pub quant: QuantFlags,
}

/// `fairy2i quantize`.
#[derive(Debug, Clone, clap::Args)]
pub struct QuantizeArgs {
    /// Input GGUF file.
    pub input: PathBuf,
    /// Output GGUF file.
    pub output: PathBuf,
    #[command(flatten)]
    pub quant: QuantFlags,
}

/// `fairy2i inspect`.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// GGUF file.
    pub file: PathBuf,
    /// Array values shown per key.
    #[arg(long, default_value_t = 4)]
    pub max_items: usize,
}

/// `fairy2i gguf-to-hf` (hidden).
#[derive(Debug, Clone, clap::Args)]
pub struct GgufToHfArgs {
    /// Input GGUF file.
    pub input: PathBuf,
    /// Output folder (created).
    pub output_dir: PathBuf,
    /// Largest shard in MiB.
    #[arg(long, default_value_t = 2048)]
    pub shard_mib: u64,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
}

/// `fairy2i bench-convert` (hidden).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchConvertArgs {
    /// Hugging Face model folder.
    pub model_dir: PathBuf,
    /// Output types to time (comma separated).
    #[arg(
        long = "types",
        value_enum,
        value_delimiter = ',',
        default_value = "f16,q8_0,f2i_w2"
    )]
    pub types: Vec<OutType>,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn type_names_are_the_ggml_names() {
        for t in OutType::value_variants() {
            let name = t.to_possible_value().map(|v| v.get_name().to_string());
            assert_eq!(name.as_deref(), Some(t.ggml().name()));
        }
        for t in StdType::value_variants() {
            let name = t.to_possible_value().map(|v| v.get_name().to_string());
            assert_eq!(name.as_deref(), Some(t.ggml().name()));
        }
    }
}
