//! GGUF v2/v3 reading and writing. Our own implementation: published crates either reject unknown
//! tensor type ids (gguf-rs) or write only v2; see `docs/design.md`, "Why our own GGUF reader/writer".

pub mod keys;
mod read;
mod value;
mod write;

pub use read::{Gguf, MappedGguf, TensorInfo, MAX_ARRAY_DEPTH, MAX_DIMS};
pub use value::{Array, Metadata, Value, ValueType};
pub use write::{validate_header, GgufWriter, TensorSpec};

/// Rounds `x` up to a multiple of `align` (a power of two).
pub fn align_up(x: u64, align: u64) -> Option<u64> {
    let mask = align.checked_sub(1)?;
    x.checked_add(mask).map(|v| v & !mask)
}
