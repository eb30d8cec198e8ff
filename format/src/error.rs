//! The one error type of the `format` crate. Messages name the field and its numbers; functions that
//! open a file wrap every error with the path (`Error::WithPath`), so a user sees `<file>: <problem>`.

use std::path::{Path, PathBuf};

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading, writing or quantizing tensors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error while handling the named file.
    #[error("{}: {source}", path.display())]
    WithPath {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// An operating-system I/O error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file ends before a field that the header promises.
    #[error("truncated file: {what} at offset {offset} needs {need} bytes, file has {len}")]
    Truncated {
        /// The field being read.
        what: String,
        /// Where it starts.
        offset: u64,
        /// Bytes it needs.
        need: u64,
        /// File length.
        len: u64,
    },
    /// Not a GGUF file.
    #[error("not a GGUF file (magic {0:02x?}, expected \"GGUF\")")]
    BadMagic([u8; 4]),
    /// A GGUF version this reader does not handle.
    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    UnsupportedVersion(u32),
    /// A KV value type id outside 0..=12.
    #[error("key '{key}': unknown value type {ty}")]
    UnknownValueType {
        /// The key.
        key: String,
        /// The raw type id.
        ty: u32,
    },
    /// An array nested deeper than the reader allows.
    #[error("key '{key}': arrays nested deeper than {max}")]
    NestingTooDeep {
        /// The key.
        key: String,
        /// The limit.
        max: usize,
    },
    /// A count or length larger than the rest of the file can hold.
    #[error("{what}: count {count} is larger than the {remaining} bytes left in the file allow")]
    CountTooLarge {
        /// The field.
        what: String,
        /// The count read.
        count: u64,
        /// Bytes left after it.
        remaining: u64,
    },
    /// A string that is not UTF-8 where UTF-8 is required.
    #[error("{0}: not valid UTF-8")]
    InvalidUtf8(String),
    /// An array item whose type is not the array's element type (the writer refuses it; a reader
    /// would decode the item's bytes as the element type).
    #[error("key '{key}': item {at} of an array of {expected} is a {got}")]
    MixedArray {
        /// The key.
        key: String,
        /// Where the item sits: its index, one `[i]` per nesting level (`[3]`, `[0][2]`).
        at: String,
        /// The array's element type.
        expected: &'static str,
        /// The item's type.
        got: &'static str,
    },
    /// The same key twice.
    #[error("duplicate key '{0}'")]
    DuplicateKey(String),
    /// The same tensor name twice.
    #[error("duplicate tensor name '{0}'")]
    DuplicateTensor(String),
    /// `general.alignment` of the wrong type or not a power of two.
    #[error("general.alignment must be a non-zero power of two u32, got {0}")]
    BadAlignment(String),
    /// A tensor type id no ggml version defines.
    #[error("tensor '{tensor}': unknown ggml type id {id}")]
    UnknownTensorType {
        /// The tensor.
        tensor: String,
        /// The raw type id.
        id: u32,
    },
    /// A type name no ggml version defines.
    #[error("unknown tensor type name '{0}'")]
    UnknownTypeName(String),
    /// More than 4 dimensions, or none.
    #[error("tensor '{tensor}': {n_dims} dimensions (ggml allows 1..=4)")]
    BadDims {
        /// The tensor.
        tensor: String,
        /// The count read.
        n_dims: u32,
    },
    /// A dimension too large for ggml (int64) or a zero-sized tensor where data is needed.
    #[error("tensor '{tensor}': dimension {dim} = {value} is out of range")]
    BadDim {
        /// The tensor.
        tensor: String,
        /// Index of the dimension.
        dim: usize,
        /// Its value.
        value: u64,
    },
    /// A row length that is not a whole number of blocks of the type.
    #[error("row of {ne0} elements is not a multiple of the {ty} block size {block}")]
    RowNotBlockAligned {
        /// The type's name.
        ty: &'static str,
        /// The row length.
        ne0: u64,
        /// The type's block size.
        block: u64,
    },
    /// The same as [`Error::RowNotBlockAligned`] for a named tensor.
    #[error("tensor '{tensor}': {source}")]
    InTensor {
        /// The tensor.
        tensor: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// A tensor's data offset that is not where the layout puts it.
    #[error("tensor '{tensor}': data offset {offset}, expected {expected} (offsets must follow the tensor order with alignment {alignment})")]
    BadTensorOffset {
        /// The tensor.
        tensor: String,
        /// Offset read (relative to the data section).
        offset: u64,
        /// Offset the layout requires.
        expected: u64,
        /// Alignment in force.
        alignment: u64,
    },
    /// Tensor data that runs past the end of the file.
    #[error(
        "tensor '{tensor}': data at {start}+{size} runs past the end of the file ({len} bytes)"
    )]
    TensorPastEnd {
        /// The tensor.
        tensor: String,
        /// Absolute start.
        start: u64,
        /// Byte size.
        size: u64,
        /// File length.
        len: u64,
    },
    /// Arithmetic on sizes overflowed.
    #[error("size overflow computing {0}")]
    Overflow(&'static str),
    /// A writer was handed tensor data of the wrong size or in the wrong order.
    #[error("tensor '{tensor}': got {got} bytes of data, the header declares {expected}")]
    TensorSizeMismatch {
        /// The tensor.
        tensor: String,
        /// Declared size.
        expected: u64,
        /// Bytes given.
        got: u64,
    },
    /// The writer was asked to finish before every tensor's data was written.
    #[error("only {written} of {declared} tensors were written")]
    MissingTensorData {
        /// Tensors written.
        written: usize,
        /// Tensors declared.
        declared: usize,
    },
    /// A tensor shape the F2I types cannot hold.
    #[error("{0}")]
    F2iShape(String),
    /// An F2I stage count outside 1..=4.
    #[error("F2I stages must be 1..=4, got {0}")]
    F2iStages(usize),
    /// A quantizer input value that is not finite, or whose widely-linear split overflows f32.
    #[error("F2I input: the value at row {row}, column {col} is not finite or its widely-linear split overflows f32")]
    F2iNotFinite {
        /// Real row of the offending value.
        row: usize,
        /// Real column of the offending value.
        col: usize,
    },
    /// A scale that ggml_half (f16) cannot hold.
    #[error("F2I {part} stage {stage}: {axis} scale {value:e} does not fit f16 (largest 65504)")]
    F2iScaleRange {
        /// "U" or "W".
        part: &'static str,
        /// Stage, 1-based.
        stage: usize,
        /// "real-axis" or "imaginary-axis".
        axis: &'static str,
        /// The scale.
        value: f32,
    },
    /// An importance vector whose length is not the row length.
    #[error("F2I importance has {got} values, the rows have {expected}")]
    F2iImportanceLen {
        /// The row length K.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// A llama.cpp importance-matrix file that is malformed (the message names the entry and field).
    #[error("imatrix: {0}")]
    Imatrix(String),
    /// An importance value that is negative or not finite.
    #[error("F2I importance of input column {col} is {value}: it must be finite and non-negative")]
    F2iImportanceValue {
        /// Real input column.
        col: usize,
        /// The value.
        value: f32,
    },
    /// F2I tensor data of the wrong size for its shape and stage count.
    #[error("F2I data is {got} bytes, the shape and stage count need {expected}")]
    F2iDataSize {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// A stored F2I scale that is NaN or infinite.
    #[error("F2I row {row}, block {block}, stage {stage}: {axis} scale is not finite")]
    F2iBadScale {
        /// Stored row.
        row: usize,
        /// Block within the row.
        block: usize,
        /// Stage, 1-based.
        stage: usize,
        /// "real-axis" or "imaginary-axis".
        axis: &'static str,
    },
    /// Block data whose length is not a whole number of blocks of its type.
    #[error("{ty} data of {len} bytes is not a whole number of {type_size}-byte blocks")]
    BlockDataSize {
        /// The type's name.
        ty: &'static str,
        /// Bytes given.
        len: u64,
        /// Bytes per block of the type.
        type_size: u64,
    },
    /// A buffer of the wrong length for the data it goes with.
    #[error("{what}: expected {expected}, got {got}")]
    LengthMismatch {
        /// Which buffer, and in what unit.
        what: &'static str,
        /// The length the data requires.
        expected: u64,
        /// The length given.
        got: u64,
    },
    /// A head count that does not split the rows into heads of an even size.
    #[error("cannot split {n_rows} rows into {n_head} heads of an even size")]
    HeadLayout {
        /// Rows of the tensor.
        n_rows: usize,
        /// Heads asked for.
        n_head: usize,
    },
    /// A row permutation that does not fit the data it reorders.
    #[error("row permutation of {perm_len} rows does not fit {elements} elements in rows of {row_len}, or names a row out of range")]
    BadPermutation {
        /// Elements of the data.
        elements: usize,
        /// Elements per row.
        row_len: usize,
        /// Rows the permutation has.
        perm_len: usize,
    },
    /// A type this crate cannot convert from or to.
    #[error("conversion {from} -> {to} is not supported")]
    UnsupportedConversion {
        /// Source type.
        from: &'static str,
        /// Target type.
        to: &'static str,
    },
}

impl Error {
    /// Wraps this error with the file it concerns.
    pub fn with_path(self, path: impl AsRef<Path>) -> Error {
        match self {
            e @ Error::WithPath { .. } => e,
            e => Error::WithPath {
                path: path.as_ref().to_path_buf(),
                source: Box::new(e),
            },
        }
    }

    /// Wraps this error with the tensor it concerns.
    pub fn in_tensor(self, tensor: &str) -> Error {
        Error::InTensor {
            tensor: tensor.to_string(),
            source: Box::new(self),
        }
    }
}

/// Adds a path to the error of a `Result`.
pub trait PathContext<T> {
    /// Wraps an error with the file it concerns.
    fn with_path(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T, E: Into<Error>> PathContext<T> for std::result::Result<T, E> {
    fn with_path(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| e.into().with_path(path))
    }
}
