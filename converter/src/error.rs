//! The converter's one error type. Every variant names the file it concerns, so `main` prints
//! `fairy2i: <file>: <problem>` once.

use std::path::PathBuf;

/// Result alias of the converter.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong turning user input into a file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Command-line flags that do not go together.
    #[error("{0}")]
    Usage(String),
    /// An I/O error on a named file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The model folder has no `config.json`.
    #[error("{}: missing config.json (not a Hugging Face model folder?)", path.display())]
    ConfigMissing {
        /// The config.json that is missing.
        path: PathBuf,
    },
    /// A JSON file that does not parse.
    #[error("{}: invalid JSON: {source}", path.display())]
    InvalidJson {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        #[source]
        source: serde_json::Error,
    },
    /// A field of config.json that is missing or has the wrong type.
    #[error("{}: field '{field}' {problem}", path.display())]
    ConfigField {
        /// The config.json.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An architecture the converter does not handle.
    #[error("{}: unsupported architecture '{arch}' (supported: {supported})", path.display())]
    UnsupportedArchitecture {
        /// The config.json or GGUF file.
        path: PathBuf,
        /// The architecture named there.
        arch: String,
        /// What is supported.
        supported: String,
    },
    /// A rope scaling type the converter does not handle.
    #[error("{}: unsupported rope_scaling type '{kind}'", path.display())]
    UnsupportedRopeScaling {
        /// The config.json.
        path: PathBuf,
        /// The rope type.
        kind: String,
    },
    /// Neither tokenizer.json nor tokenizer.model in the model folder.
    #[error("{}: no tokenizer (tokenizer.json or tokenizer.model) in the model folder (pass --no-tokenizer to convert without one)", path.display())]
    TokenizerMissing {
        /// The model folder.
        path: PathBuf,
    },
    /// The tokenizer files could not be converted (the error names its file).
    #[error("{0}")]
    Tokenizer(#[from] crate::hf::tokenizer::TokenizerError),
    /// No `*.safetensors` file in the model folder.
    #[error("{}: no model*.safetensors files in the model folder", path.display())]
    NoWeights {
        /// The model folder.
        path: PathBuf,
    },
    /// `model.safetensors.index.json` without a usable `weight_map`.
    #[error("{}: 'weight_map' is missing or not an object of strings", path.display())]
    BadIndex {
        /// The index file.
        path: PathBuf,
    },
    /// A shard named by the index that is not on disk.
    #[error("{}: shard '{shard}' listed in the index is missing", path.display())]
    ShardMissing {
        /// The index file.
        path: PathBuf,
        /// The absent shard.
        shard: String,
    },
    /// Tensors named in the index but absent from the shards, or the reverse.
    #[error("{}: index and shards disagree: tensor '{tensor}' {problem}", path.display())]
    IndexMismatch {
        /// The index file.
        path: PathBuf,
        /// The first tensor that disagrees.
        tensor: String,
        /// How.
        problem: &'static str,
    },
    /// A safetensors file the `safetensors` crate rejects (truncated, bad header…).
    #[error("{}: invalid safetensors file: {}", path.display(), describe_safetensors(source))]
    Safetensors {
        /// The shard.
        path: PathBuf,
        /// The crate's error.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A tensor dtype other than F32/F16/BF16.
    #[error("{}: tensor '{tensor}' has dtype {dtype}, only F32, F16 and BF16 are supported", path.display())]
    UnsupportedDtype {
        /// The shard.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its dtype.
        dtype: String,
    },
    /// A tensor name the architecture does not map.
    #[error("{}: cannot map tensor '{tensor}' to a GGUF name for architecture {arch}", path.display())]
    UnmappedTensor {
        /// The shard.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// The architecture.
        arch: &'static str,
    },
    /// A tensor whose shape disagrees with config.json.
    #[error("{}: tensor '{tensor}' has shape {got:?}, config.json implies {expected:?}", path.display())]
    ShapeMismatch {
        /// The shard.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Shape config.json implies (PyTorch order).
        expected: Vec<u64>,
        /// Shape in the file.
        got: Vec<u64>,
    },
    /// A tensor the model needs that is not in the checkpoint.
    #[error("{}: tensor '{tensor}' is missing from the checkpoint", path.display())]
    TensorMissing {
        /// The model folder.
        path: PathBuf,
        /// The tensor (HF name).
        tensor: String,
    },
    /// An error from the format crate (GGUF reading/writing, quantization); it names its file.
    #[error("{0}")]
    Format(#[from] fairy2i_format::Error),
    /// A format-crate error that does not name a file yet.
    #[error("{}: {source}", path.display())]
    FormatAt {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: fairy2i_format::Error,
    },
    /// A GGUF key that is missing or has the wrong type.
    #[error("{}: GGUF key '{key}' {problem}", path.display())]
    GgufKey {
        /// The GGUF file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The thread pool could not be built.
    #[error("--threads: {0}")]
    Threads(#[from] rayon::ThreadPoolBuildError),
    /// An output path that cannot be written.
    #[error("{}: cannot write the output: {problem}", path.display())]
    OutputPath {
        /// The output path.
        path: PathBuf,
        /// Why not.
        problem: &'static str,
    },
    /// `quantize` without an output file and without `--dry-run` (clap normally refuses this first).
    #[error("quantize: an OUTPUT file is needed without --dry-run")]
    OutputMissing,
    /// The output file is the input file.
    #[error("{}: output would overwrite the input", path.display())]
    OutputIsInput {
        /// The file.
        path: PathBuf,
    },
    /// Standard output could not be written (other than by its reader going away).
    #[error("standard output: {0}")]
    Stdout(std::io::Error),
    /// Standard output was closed by its reader (`fairy2i inspect FILE | head`): not a failure,
    /// the command stops printing and exits 0 without a message.
    #[error("standard output was closed")]
    StdoutClosed,
}

/// Adds a path to I/O errors.
pub trait IoContext<T> {
    /// Wraps an I/O error with the file it concerns.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.into(),
            source,
        })
    }
}

/// Adds a path to format-crate errors.
pub trait FormatContext<T> {
    /// Wraps a format-crate error with the file it concerns.
    fn at_file(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> FormatContext<T> for std::result::Result<T, fairy2i_format::Error> {
    fn at_file(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| match source {
            e @ fairy2i_format::Error::WithPath { .. } => Error::Format(e),
            source => Error::FormatAt {
                path: path.into(),
                source,
            },
        })
    }
}

/// A readable phrase for the `safetensors` crate's errors (their `Display` is the variant name).
fn describe_safetensors(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::MetadataIncompleteBuffer => {
            "the file size does not match its header (truncated?)".into()
        }
        E::HeaderTooSmall => "shorter than the 8-byte header length (truncated?)".into(),
        E::InvalidHeaderLength => "the header runs past the end of the file (truncated?)".into(),
        E::HeaderTooLarge => "the header length is implausibly large".into(),
        E::InvalidHeader => "the header is not UTF-8".into(),
        E::InvalidHeaderDeserialization => "the header is not valid safetensors JSON".into(),
        E::InvalidOffset(name) => format!("tensor '{name}' has offsets that are not contiguous"),
        E::TensorInvalidInfo => "a tensor's byte size disagrees with its dtype and shape".into(),
        E::ValidationOverflow => "a tensor's size overflows".into(),
        other => format!("{other:?}"),
    }
}
