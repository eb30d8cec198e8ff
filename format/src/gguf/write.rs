//! The streaming GGUF writer: the header (with every tensor's offset) is written first, then each
//! tensor's data in declared order, one at a time, so a model never has to be held in memory. Output
//! goes to a temporary file beside the target and is renamed into place by [`GgufWriter::finish`];
//! dropping an unfinished writer deletes the temporary file.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::align_up;
use super::keys::{DEFAULT_ALIGNMENT, GENERAL_ALIGNMENT};
use super::value::{Metadata, Value};
use crate::error::{Error, PathContext, Result};
use crate::types::GgmlType;

/// What the header declares for one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// Dimensions in ggml order.
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
}

impl TensorSpec {
    /// Bytes of this tensor's data.
    pub fn size(&self) -> Result<u64> {
        self.ty
            .tensor_size(&self.dims)
            .map_err(|e| e.in_tensor(&self.name))
    }
}

/// Serialises a header (magic to the end of the tensor infos, without the padding) into `out`, and
/// returns each tensor's data size.
pub fn encode_header(
    version: u32,
    metadata: &Metadata,
    tensors: &[TensorSpec],
    alignment: u64,
    out: &mut Vec<u8>,
) -> Result<Vec<u64>> {
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata.iter() {
        put_str(out, k.as_bytes());
        out.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
        put_value(out, v);
    }
    let mut sizes = Vec::with_capacity(tensors.len());
    let mut offset = 0u64;
    for t in tensors {
        let size = t.size()?;
        put_str(out, t.name.as_bytes());
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.ty.id().to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset = offset
            .checked_add(size)
            .and_then(|e| align_up(e, alignment))
            .ok_or(Error::Overflow("tensor offsets"))?;
        sizes.push(size);
    }
    Ok(sizes)
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::String(s) => put_str(out, s),
        Value::Array(a) => {
            out.extend_from_slice(&(a.elem_type as u32).to_le_bytes());
            out.extend_from_slice(&(a.items.len() as u64).to_le_bytes());
            for item in &a.items {
                put_value(out, item);
            }
        }
    }
}

/// A GGUF file being written.
pub struct GgufWriter {
    path: PathBuf,
    out: BufWriter<tempfile::NamedTempFile>,
    tensors: Vec<TensorSpec>,
    sizes: Vec<u64>,
    alignment: u64,
    next: usize,
}

impl GgufWriter {
    /// Creates the temporary file beside `path` and writes the GGUF v3 header for `tensors`.
    /// The alignment is `general.alignment` from `metadata` when present, else 32.
    pub fn create(
        path: impl AsRef<Path>,
        metadata: &Metadata,
        tensors: Vec<TensorSpec>,
    ) -> Result<GgufWriter> {
        Self::create_versioned(path, 3, metadata, tensors)
    }

    /// As [`GgufWriter::create`], with an explicit GGUF version (2 or 3; used to round-trip v2 files).
    pub fn create_versioned(
        path: impl AsRef<Path>,
        version: u32,
        metadata: &Metadata,
        tensors: Vec<TensorSpec>,
    ) -> Result<GgufWriter> {
        let path = path.as_ref().to_path_buf();
        let alignment = match metadata.get(GENERAL_ALIGNMENT) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if *a != 0 && a.is_power_of_two() => u64::from(*a),
            Some(other) => return Err(Error::BadAlignment(other.summary(4)).with_path(&path)),
        };
        if version != 2 && version != 3 {
            return Err(Error::UnsupportedVersion(version).with_path(&path));
        }
        let mut header = Vec::new();
        let sizes =
            encode_header(version, metadata, &tensors, alignment, &mut header).with_path(&path)?;
        let padded = align_up(header.len() as u64, alignment).ok_or(Error::Overflow("header"))?;
        header.resize(padded as usize, 0);

        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{file_name}."))
            .suffix(".tmp")
            .tempfile_in(&dir)
            .with_path(&path)?;
        let mut out = BufWriter::with_capacity(1 << 20, tmp);
        out.write_all(&header).with_path(&path)?;
        Ok(GgufWriter {
            path,
            out,
            tensors,
            sizes,
            alignment,
            next: 0,
        })
    }

    /// The tensor whose data is expected next, if any.
    pub fn next_tensor(&self) -> Option<&TensorSpec> {
        self.tensors.get(self.next)
    }

    /// Writes the data of the next tensor (in declared order) and its padding.
    pub fn write_tensor(&mut self, data: &[u8]) -> Result<()> {
        let Some(spec) = self.tensors.get(self.next) else {
            return Err(Error::TensorSizeMismatch {
                tensor: "<none left>".into(),
                expected: 0,
                got: data.len() as u64,
            }
            .with_path(&self.path));
        };
        let expected = self.sizes[self.next];
        if data.len() as u64 != expected {
            return Err(Error::TensorSizeMismatch {
                tensor: spec.name.clone(),
                expected,
                got: data.len() as u64,
            }
            .with_path(&self.path));
        }
        self.out.write_all(data).with_path(&self.path)?;
        let pad = align_up(expected, self.alignment).ok_or(Error::Overflow("padding"))? - expected;
        self.out
            .write_all(&vec![0u8; pad as usize])
            .with_path(&self.path)?;
        self.next += 1;
        Ok(())
    }

    /// Flushes, syncs and renames the file into place. Fails if any tensor's data is missing.
    pub fn finish(self) -> Result<PathBuf> {
        if self.next != self.tensors.len() {
            return Err(Error::MissingTensorData {
                written: self.next,
                declared: self.tensors.len(),
            }
            .with_path(&self.path));
        }
        let tmp = self
            .out
            .into_inner()
            .map_err(|e| Error::Io(e.into_error()))
            .with_path(&self.path)?;
        tmp.as_file().sync_all().with_path(&self.path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // tempfile creates 0600; a model file is an ordinary file.
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .with_path(&self.path)?;
        }
        tmp.persist(&self.path)
            .map_err(|e| Error::Io(e.error))
            .with_path(&self.path)?;
        Ok(self.path)
    }
}
