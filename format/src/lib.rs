//! `fairy2i-format`: the bytes and numbers of fairy2i, with no I/O policy.
//!
//! - [`gguf`]: a GGUF v2/v3 reader (over borrowed bytes, usually a memory map) and a streaming writer.
//! - [`types`]: every ggml tensor type and the F2I types, declared once.
//! - [`blocks`]: ggml's standard block types (dequantize and, for the fallback types, quantize).
//! - [`f2i`]: the F2I block layout and the Fairy2i quantizer (`docs/format.md`, `docs/quantizer.md`).
//! - [`imatrix`]: llama.cpp importance-matrix files (legacy `.dat` and GGUF), for weighted quantization.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod blocks;
pub mod convert;
pub mod error;
pub mod f2i;
pub mod gguf;
pub mod imatrix;
pub mod mmap;
pub mod permute;
pub mod types;

pub use error::{Error, PathContext, Result};
pub use types::GgmlType;
