//! The streaming GGUF writer: the header (with every tensor's offset) is written first, then each
//! tensor's data in declared order, one at a time, so a model never has to be held in memory. Output
//! goes to a temporary file beside the target and is renamed into place by [`GgufWriter::finish`];
//! dropping an unfinished writer deletes the temporary file.
//!
//! The writer refuses every header the reader ([`super::Gguf::parse`]) would reject, before it
//! creates any file: duplicate keys or tensor names, array items of another type than the array's,
//! arrays nested too deeply, a bad `general.alignment` or version, 0 or more than 4 dimensions,
//! dimensions or element counts past int64, rows that are not whole blocks, and sizes past int64.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::align_up;
use super::read::{
    alignment_of, check_array_depth, check_dim, check_element_counts, check_n_dims,
    tensor_byte_size,
};
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
    /// Bytes of this tensor's data; an error for a shape the reader would reject.
    pub fn size(&self) -> Result<u64> {
        check_n_dims(&self.name, self.dims.len())?;
        for (d, &v) in self.dims.iter().enumerate() {
            check_dim(&self.name, d, v)?;
        }
        check_element_counts(&self.name, &self.dims)?;
        tensor_byte_size(&self.name, self.ty, &self.dims)
    }
}

/// Checks a header against every rule of the reader, and returns its alignment and each tensor's
/// data size. Errors name the offending key or tensor.
pub fn validate_header(
    version: u32,
    metadata: &Metadata,
    tensors: &[TensorSpec],
) -> Result<(u64, Vec<u64>)> {
    if version != 2 && version != 3 {
        return Err(Error::UnsupportedVersion(version));
    }
    let mut keys = std::collections::HashSet::with_capacity(metadata.len());
    for (k, v) in metadata.iter() {
        if !keys.insert(k) {
            return Err(Error::DuplicateKey(k.to_string()));
        }
        check_value(k, v, &mut Vec::new())?;
    }
    let alignment = alignment_of(metadata)?;
    let mut names = std::collections::HashSet::with_capacity(tensors.len());
    let mut sizes = Vec::with_capacity(tensors.len());
    for t in tensors {
        if !names.insert(t.name.as_str()) {
            return Err(Error::DuplicateTensor(t.name.clone()));
        }
        sizes.push(t.size()?);
    }
    Ok((alignment, sizes))
}

/// A value inside `path` (the indices of the enclosing arrays' items): arrays must not nest deeper
/// than the reader allows, and every item must have its array's element type.
fn check_value(key: &str, v: &Value, path: &mut Vec<usize>) -> Result<()> {
    let Value::Array(a) = v else {
        return Ok(());
    };
    check_array_depth(key, path.len())?;
    for (i, item) in a.items.iter().enumerate() {
        path.push(i);
        if item.value_type() != a.elem_type {
            return Err(Error::MixedArray {
                key: key.to_string(),
                at: path.iter().map(|i| format!("[{i}]")).collect(),
                expected: a.elem_type.name(),
                got: item.value_type().name(),
            });
        }
        check_value(key, item, path)?;
        path.pop();
    }
    Ok(())
}

/// Serialises a header (magic to the end of the tensor infos, without the padding) into `out`, and
/// returns each tensor's data size. Refuses (writing nothing) what [`validate_header`] refuses;
/// `alignment` must be the one `metadata` implies.
pub fn encode_header(
    version: u32,
    metadata: &Metadata,
    tensors: &[TensorSpec],
    alignment: u64,
    out: &mut Vec<u8>,
) -> Result<Vec<u64>> {
    let (implied, sizes) = validate_header(version, metadata, tensors)?;
    if implied != alignment {
        return Err(Error::BadAlignment(format!(
            "{alignment} (the metadata says {implied})"
        )));
    }
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata.iter() {
        put_str(out, k.as_bytes());
        out.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
        put_value(out, v);
    }
    let mut offset = 0u64;
    for (t, &size) in tensors.iter().zip(&sizes) {
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
        // Everything is checked before the temporary file exists.
        let alignment = alignment_of(metadata).with_path(&path)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `Metadata::set` keeps keys unique, so a duplicate can only come from inside the crate; the
    /// writer still checks, before it creates any file.
    #[test]
    fn duplicate_keys_are_refused_before_any_file_exists() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut md = Metadata::new();
        md.push_unchecked("general.architecture".into(), Value::str("llama"));
        md.push_unchecked("llama.block_count".into(), Value::U32(1));
        md.push_unchecked("general.architecture".into(), Value::str("qwen2"));
        let path = dir.path().join("out.gguf");
        let e = GgufWriter::create(&path, &md, Vec::new())
            .err()
            .expect("refused");
        match e {
            Error::WithPath { source, .. } => {
                assert!(
                    matches!(*source, Error::DuplicateKey(ref k) if k == "general.architecture"),
                    "{source}"
                );
            }
            e => panic!("no path: {e}"),
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn encode_header_refuses_an_alignment_the_metadata_does_not_imply() {
        let mut out = Vec::new();
        let e = encode_header(3, &Metadata::new(), &[], 64, &mut out).expect_err("refused");
        assert!(matches!(e, Error::BadAlignment(_)), "{e}");
        assert!(out.is_empty());
    }
}
