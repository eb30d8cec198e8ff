//! GGUF keys this project reads or writes. Each key is spelled once, here.

/// Architecture name (`llama`, `qwen2`, …).
pub const GENERAL_ARCHITECTURE: &str = "general.architecture";
/// Data alignment (u32, power of two; 32 when absent).
pub const GENERAL_ALIGNMENT: &str = "general.alignment";
/// llama_ftype of the file.
pub const GENERAL_FILE_TYPE: &str = "general.file_type";
/// Quantization version (2).
pub const GENERAL_QUANTIZATION_VERSION: &str = "general.quantization_version";
/// Model name.
pub const GENERAL_NAME: &str = "general.name";
/// Version of the F2I byte layout (u32).
pub const FAIRY2I_FORMAT_VERSION: &str = "fairy2i.format_version";
/// Stages of the dominant F2I type (u32).
pub const FAIRY2I_STAGES: &str = "fairy2i.stages";
/// Scale mode that produced the F2I tensors (string).
pub const FAIRY2I_SCALE_MODE: &str = "fairy2i.scale_mode";
/// Where the weights came from (`hf`, `gguf:<file type>`).
pub const FAIRY2I_SOURCE: &str = "fairy2i.source";
/// File name of the importance matrix the F2I tensors were weighted with (string; absent without one).
pub const FAIRY2I_IMATRIX: &str = "fairy2i.imatrix";

/// Default alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The F2I byte layout version this crate writes.
pub const F2I_FORMAT_VERSION: u32 = 1;
