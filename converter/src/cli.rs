//! Command-line definition (clap derive). Each flag is defined once, here; the doc comments are the
//! help text.

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
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

/// Every type `quantize` can write a tensor as (`--output-type`, `--tensor-type`; `--embd-type` takes
/// the standard ones): name as written on the command line (any case), type, help.
pub const WRITABLE_TYPES: &[(&str, GgmlType, &str)] = &[
    ("f2i_w1", GgmlType::F2I_W1, "Fairy2i, 1 stage (1.125 bpw)"),
    ("f2i_w2", GgmlType::F2I_W2, "Fairy2i, 2 stages (2.25 bpw)"),
    ("f2i_w3", GgmlType::F2I_W3, "Fairy2i, 3 stages (3.375 bpw)"),
    ("f2i_w4", GgmlType::F2I_W4, "Fairy2i, 4 stages (4.5 bpw)"),
    ("q2_k", GgmlType::Q2_K, "k-quant, 2-bit (2.625 bpw)"),
    ("q3_k", GgmlType::Q3_K, "k-quant, 3-bit (3.4375 bpw)"),
    ("q4_k", GgmlType::Q4_K, "k-quant, 4-bit (4.5 bpw)"),
    ("q5_k", GgmlType::Q5_K, "k-quant, 5-bit (5.5 bpw)"),
    ("q6_k", GgmlType::Q6_K, "k-quant, 6-bit (6.5625 bpw)"),
    ("q4_0", GgmlType::Q4_0, "4-bit, 32-element blocks"),
    ("q8_0", GgmlType::Q8_0, "8-bit, 32-element blocks"),
    ("f16", GgmlType::F16, "16-bit float"),
    ("bf16", GgmlType::BF16, "bfloat16"),
    ("f32", GgmlType::F32, "32-bit float"),
];

/// The type named `name` (any case) among `types`.
fn lookup_type(types: &[(&str, GgmlType, &str)], name: &str) -> Option<GgmlType> {
    types
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, t, _)| t)
}

/// A clap parser for one of `WRITABLE_TYPES` (all of them, or the standard ones), listing them in
/// `--help`; the argument needs `ignore_case = true`.
fn type_parser(f2i: bool) -> impl TypedValueParser<Value = GgmlType> {
    let names = WRITABLE_TYPES
        .iter()
        .filter(move |(_, t, _)| f2i || !t.is_f2i())
        .map(|&(n, _, h)| PossibleValue::new(n).help(h));
    PossibleValuesParser::new(names).map(|s| {
        // The parser has accepted `s` (ignoring case), so it is in the table.
        lookup_type(WRITABLE_TYPES, &s).unwrap_or(GgmlType::F32)
    })
}

/// Why a `--tensor-type` argument is refused (clap prints it after the argument).
#[derive(Debug, thiserror::Error)]
pub enum TensorTypeArgError {
    /// No `=` between pattern and type.
    #[error("expected PATTERN=TYPE (e.g. 'attn_v=q6_k'), found no '='")]
    NoEquals,
    /// Nothing before the `=`.
    #[error("missing tensor name pattern before '='")]
    EmptyPattern,
    /// Nothing after the `=`.
    #[error("missing type after '='")]
    EmptyType,
    /// A type name that is not one of [`WRITABLE_TYPES`].
    #[error("unknown type '{name}' (known: {known})")]
    UnknownType {
        /// The name given.
        name: String,
        /// The names accepted.
        known: String,
    },
    /// A pattern that is not a valid regular expression.
    #[error(
        "'{pattern}' is not a valid regular expression ({})",
        regex_problem(source)
    )]
    BadPattern {
        /// The pattern (lower-cased, as matched).
        pattern: String,
        /// The regex crate's message.
        #[source]
        source: regex::Error,
    },
}

/// The regex crate's message on one line: its last line (the problem), without "error: ".
fn regex_problem(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    last.trim().trim_start_matches("error: ").to_string()
}

/// One `--tensor-type PATTERN=TYPE`: tensors whose name contains a match of `PATTERN` (a regular
/// expression, lower-cased; llama-quantize's `--tensor-type` rules) get `TYPE`.
#[derive(Debug, Clone)]
pub struct TensorTypeRule {
    /// The argument as given.
    pub arg: String,
    /// The compiled, lower-cased pattern.
    pub regex: regex::Regex,
    /// The type.
    pub ty: GgmlType,
}

impl TensorTypeRule {
    /// Whether the rule applies to tensor `name` (a match anywhere in it).
    pub fn matches(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }
}

/// Parses `PATTERN=TYPE` as llama-quantize does: split at the first `=`, pattern lower-cased,
/// type name in any case.
pub fn parse_tensor_type(arg: &str) -> Result<TensorTypeRule, TensorTypeArgError> {
    let (pattern, name) = arg.split_once('=').ok_or(TensorTypeArgError::NoEquals)?;
    if pattern.is_empty() {
        return Err(TensorTypeArgError::EmptyPattern);
    }
    if name.is_empty() {
        return Err(TensorTypeArgError::EmptyType);
    }
    let ty = lookup_type(WRITABLE_TYPES, name).ok_or_else(|| TensorTypeArgError::UnknownType {
        name: name.to_string(),
        known: WRITABLE_TYPES
            .iter()
            .map(|(n, _, _)| *n)
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    let pattern = pattern.to_lowercase();
    let regex = regex::Regex::new(&pattern)
        .map_err(|source| TensorTypeArgError::BadPattern { pattern, source })?;
    Ok(TensorTypeRule {
        arg: arg.to_string(),
        regex,
        ty,
    })
}

/// Named type mixtures of `quantize` with an F2I `--type` (`docs/quality.md` has the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Recipe {
    /// llama-quantize's mixtures per width (W2 ~ Q2_K, W3 ~ Q3_K_M, W4 ~ Q4_K_M): output.weight Q6_K,
    /// token_embd a k-quant, attn_v / ffn_down / attn_output with more bits.
    #[value(name = "mix")]
    Mix,
    /// output.weight and token_embd as `mix`, every other matrix at --type.
    #[value(name = "uniform")]
    Uniform,
    /// Every matrix at --type, output.weight included; token_embd q8_0 (the behaviour before recipes).
    #[value(name = "pure")]
    Pure,
}

impl Recipe {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Mix => "mix",
            Recipe::Uniform => "uniform",
            Recipe::Pure => "pure",
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
    /// Type of token_embd (read row by row, so never F2I). Default with an F2I --type: convert q8_0;
    /// quantize per --recipe (mix: a k-quant, or output.weight's type when the model ties them)
    #[arg(long, value_name = "TYPE", value_parser = type_parser(false), ignore_case = true)]
    pub embd_type: Option<GgmlType>,
    /// Type of matrices F2I cannot hold (K % 256 != 0, odd N, odd head count for permuted Q/K), and of
    /// those a k-quant cannot hold (K % 256 != 0).
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
    /// Output GGUF file (not needed with --dry-run).
    #[arg(required_unless_present = "dry_run")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub quant: QuantFlags,
    /// Print every tensor's type and the sizes without quantizing or writing anything
    #[arg(long)]
    pub dry_run: bool,
    /// Type mixture with an F2I --type: which tensors get more bits than --type, and the types of
    /// output.weight and token_embd
    #[arg(long, value_enum, default_value = "mix")]
    pub recipe: Recipe,
    /// Same as --recipe pure: every matrix F2I (llama-quantize's --pure)
    #[arg(long, conflicts_with = "recipe")]
    pub pure: bool,
    /// Type of output.weight (default: per --recipe; q6_k for mix and uniform)
    #[arg(long, value_name = "TYPE", value_parser = type_parser(true), ignore_case = true)]
    pub output_type: Option<GgmlType>,
    /// Tensors whose name contains a match of the regular expression PATTERN get TYPE (repeatable;
    /// the first matching one wins; before --recipe, after --output-type / --embd-type), as
    /// llama-quantize's --tensor-type, e.g. 'attn_v=q6_k' or 'blk\.[0-3]\.ffn_down=f2i_w4'. TYPE: any
    /// --output-type value
    #[arg(long, value_name = "PATTERN=TYPE", value_parser = parse_tensor_type)]
    pub tensor_type: Vec<TensorTypeRule>,
}

impl QuantizeArgs {
    /// The recipe in effect (`--pure` is `--recipe pure`).
    pub fn recipe(&self) -> Recipe {
        if self.pure {
            Recipe::Pure
        } else {
            self.recipe
        }
    }
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
        // The writable types are ggml's names up to case (llama-quantize matches them ignoring case).
        for (name, ty, _) in WRITABLE_TYPES {
            assert!(ty.name().eq_ignore_ascii_case(name), "{name}");
            assert!(
                fairy2i_format::blocks::can_quantize(*ty) || ty.is_f2i(),
                "{name}"
            );
        }
    }

    #[test]
    fn tensor_type_arguments() {
        let r = parse_tensor_type("Blk\\.0\\.ATTN_V=Q6_K").unwrap();
        assert_eq!(r.ty, GgmlType::Q6_K);
        assert!(r.matches("blk.0.attn_v.weight"));
        assert!(!r.matches("blk.10.attn_v.weight"));
        // Unanchored, like std::regex_search; the first '=' splits.
        assert!(parse_tensor_type("v=f2i_w3")
            .unwrap()
            .matches("blk.3.attn_v.weight"));
        assert!(matches!(
            parse_tensor_type("a=b=q8_0"),
            Err(TensorTypeArgError::UnknownType { .. })
        ));
        assert!(matches!(
            parse_tensor_type("attn_v"),
            Err(TensorTypeArgError::NoEquals)
        ));
        assert!(matches!(
            parse_tensor_type("=q8_0"),
            Err(TensorTypeArgError::EmptyPattern)
        ));
        assert!(matches!(
            parse_tensor_type("attn_v="),
            Err(TensorTypeArgError::EmptyType)
        ));
        let e = parse_tensor_type("attn_v=q7_k").unwrap_err();
        assert!(e.to_string().contains("unknown type 'q7_k'"), "{e}");
        assert!(e.to_string().contains("q6_k"), "{e}");
        let e = parse_tensor_type("attn_(v=q8_0").unwrap_err();
        assert!(matches!(e, TensorTypeArgError::BadPattern { .. }), "{e}");
    }
}
