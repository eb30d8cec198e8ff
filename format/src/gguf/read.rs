//! The GGUF reader. Every count, length and offset is checked against the bytes that remain before
//! anything is allocated, with overflow-checked arithmetic; the rules are those of ggml's `gguf.cpp`,
//! so a file this reader accepts is one llama.cpp accepts too (for the types both know).

use std::path::{Path, PathBuf};

use super::align_up;
use super::keys::{DEFAULT_ALIGNMENT, GENERAL_ALIGNMENT};
use super::value::{Array, Metadata, Value, ValueType};
use crate::error::{Error, PathContext, Result};
use crate::types::GgmlType;

/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: u32 = 4;
/// How deeply arrays may nest inside arrays.
pub const MAX_ARRAY_DEPTH: usize = 8;

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Dimensions in ggml order (`ne[0]` = row length first).
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Offset of the data relative to the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Row length (`ne[0]`).
    pub fn ne0(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows (product of `ne[1..]`).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}

/// A parsed GGUF file borrowing its bytes.
#[derive(Debug, Clone)]
pub struct Gguf<'a> {
    /// Format version (2 or 3).
    pub version: u32,
    /// Key/value metadata in file order.
    pub metadata: Metadata,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// Data alignment.
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    bytes: &'a [u8],
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let len = self.bytes.len() as u64;
        let end = (self.pos as u64)
            .checked_add(n)
            .filter(|&e| e <= len)
            .ok_or_else(|| Error::Truncated {
                what: what(),
                offset: self.pos as u64,
                need: n,
                len,
            })?;
        let s = &self.bytes[self.pos..end as usize];
        self.pos = end as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A u64 count of items each at least `min_item_size` bytes, checked against what remains.
    fn count(&mut self, min_item_size: u64, what: &dyn Fn() -> String) -> Result<u64> {
        let n = self.u64(what)?;
        let remaining = self.remaining();
        if n.checked_mul(min_item_size).is_none_or(|b| b > remaining) {
            return Err(Error::CountTooLarge {
                what: what(),
                count: n,
                remaining,
            });
        }
        Ok(n)
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let n = self.count(1, what)?;
        self.take(n, what)
    }
}

impl<'a> Gguf<'a> {
    /// Parses a whole GGUF file held in memory.
    pub fn parse(bytes: &'a [u8]) -> Result<Gguf<'a>> {
        let mut c = Cursor { bytes, pos: 0 };
        let magic: [u8; 4] = c.array(&|| "magic".into())?;
        if &magic != b"GGUF" {
            return Err(Error::BadMagic(magic));
        }
        let version = c.u32(&|| "version".into())?;
        if version != 2 && version != 3 {
            return Err(Error::UnsupportedVersion(version));
        }
        // A tensor info is at least 8 (name len) + 4 (n_dims) + 8 (ne0) + 4 (type) + 8 (offset) bytes;
        // a KV at least 8 (key len) + 4 (type) + 1 (value) bytes.
        let n_tensors = c.count(32, &|| "tensor count".into())?;
        let n_kv = c.count(13, &|| "key/value count".into())?;

        let mut metadata = Metadata::new();
        for i in 0..n_kv {
            let key = c.string(&|| format!("key #{i}"))?;
            let key = std::str::from_utf8(key)
                .map_err(|_| Error::InvalidUtf8(format!("key #{i}")))?
                .to_string();
            if metadata.contains(&key) {
                return Err(Error::DuplicateKey(key));
            }
            let ty = c.u32(&|| format!("type of key '{key}'"))?;
            let ty = ValueType::from_u32(ty).ok_or_else(|| Error::UnknownValueType {
                key: key.clone(),
                ty,
            })?;
            let value = read_value(&mut c, ty, &key, 0)?;
            metadata.push_unchecked(key, value);
        }

        let alignment = alignment_of(&metadata)?;

        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors as usize);
        let mut names = std::collections::HashSet::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = c.string(&|| format!("name of tensor #{i}"))?;
            let name = std::str::from_utf8(name)
                .map_err(|_| Error::InvalidUtf8(format!("name of tensor #{i}")))?
                .to_string();
            if !names.insert(name.clone()) {
                return Err(Error::DuplicateTensor(name));
            }
            let n_dims = c.u32(&|| format!("tensor '{name}' n_dims"))?;
            check_n_dims(&name, n_dims as usize)?;
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims as usize {
                let v = c.u64(&|| format!("tensor '{name}' ne[{d}]"))?;
                check_dim(&name, d, v)?;
                dims.push(v);
            }
            check_element_counts(&name, &dims)?;
            let id = c.u32(&|| format!("tensor '{name}' type"))?;
            let ty = GgmlType::from_u32(id).ok_or_else(|| Error::UnknownTensorType {
                tensor: name.clone(),
                id,
            })?;
            let size = tensor_byte_size(&name, ty, &dims)?;
            let offset = c.u64(&|| format!("tensor '{name}' offset"))?;
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
                size,
            });
        }

        let data_offset =
            align_up(c.pos as u64, alignment).ok_or(Error::Overflow("data section offset"))?;
        let len = bytes.len() as u64;
        // Offsets must be the running sum of padded sizes, in declared order (as gguf.cpp requires).
        let mut expected = 0u64;
        for t in &tensors {
            if t.offset != expected {
                return Err(Error::BadTensorOffset {
                    tensor: t.name.clone(),
                    offset: t.offset,
                    expected,
                    alignment,
                });
            }
            let start = data_offset
                .checked_add(t.offset)
                .ok_or(Error::Overflow("tensor start"))?;
            if start.checked_add(t.size).is_none_or(|end| end > len) {
                return Err(Error::TensorPastEnd {
                    tensor: t.name.clone(),
                    start,
                    size: t.size,
                    len,
                });
            }
            expected = t
                .offset
                .checked_add(t.size)
                .and_then(|e| align_up(e, alignment))
                .ok_or(Error::Overflow("tensor offsets"))?;
        }

        Ok(Gguf {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            bytes,
        })
    }

    /// The bytes of a tensor of this file (bounds were checked by [`Gguf::parse`]).
    pub fn tensor_data(&self, t: &TensorInfo) -> &'a [u8] {
        let start = (self.data_offset + t.offset) as usize;
        &self.bytes[start..start + t.size as usize]
    }

    /// The info of the tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// ggml's limit on the number of dimensions: 1 to [`MAX_DIMS`].
pub(crate) fn check_n_dims(tensor: &str, n_dims: usize) -> Result<()> {
    if n_dims == 0 || n_dims > MAX_DIMS as usize {
        return Err(Error::BadDims {
            tensor: tensor.to_string(),
            n_dims: u32::try_from(n_dims).unwrap_or(u32::MAX),
        });
    }
    Ok(())
}

/// One dimension must fit ggml's `int64_t`.
pub(crate) fn check_dim(tensor: &str, dim: usize, value: u64) -> Result<()> {
    if value > i64::MAX as u64 {
        return Err(Error::BadDim {
            tensor: tensor.to_string(),
            dim,
            value,
        });
    }
    Ok(())
}

/// As gguf.cpp: the running element count must stay within int64 (a 0 ends the risk), so
/// `n_elements` cannot overflow. Stricter than gguf.cpp only for `ne[0] == 0`: the row count alone
/// must fit too, so `n_rows` cannot overflow either.
pub(crate) fn check_element_counts(tensor: &str, dims: &[u64]) -> Result<()> {
    for start in [0, 1] {
        let mut count = 1u64;
        for (d, &v) in dims.iter().enumerate().skip(start) {
            count = match count.checked_mul(v) {
                Some(n) if n <= i64::MAX as u64 => n,
                _ => {
                    return Err(Error::BadDim {
                        tensor: tensor.to_string(),
                        dim: d,
                        value: v,
                    })
                }
            };
        }
    }
    Ok(())
}

/// The data size of a tensor: whole blocks per row, and within int64 as a whole.
pub(crate) fn tensor_byte_size(tensor: &str, ty: GgmlType, dims: &[u64]) -> Result<u64> {
    let size = ty.tensor_size(dims).map_err(|e| e.in_tensor(tensor))?;
    if size > i64::MAX as u64 {
        return Err(Error::Overflow("tensor size").in_tensor(tensor));
    }
    Ok(size)
}

/// An array value `depth` arrays deep (0 for a key's own value) must be less than
/// [`MAX_ARRAY_DEPTH`] deep.
pub(crate) fn check_array_depth(key: &str, depth: usize) -> Result<()> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(Error::NestingTooDeep {
            key: key.to_string(),
            max: MAX_ARRAY_DEPTH,
        });
    }
    Ok(())
}

/// `general.alignment`: absent (32) or a non-zero power-of-two u32.
pub(crate) fn alignment_of(metadata: &Metadata) -> Result<u64> {
    match metadata.get(GENERAL_ALIGNMENT) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(Value::U32(a)) if *a != 0 && a.is_power_of_two() => Ok(u64::from(*a)),
        Some(other) => Err(Error::BadAlignment(other.summary(4))),
    }
}

fn read_value(c: &mut Cursor<'_>, ty: ValueType, key: &str, depth: usize) -> Result<Value> {
    let what = || format!("value of key '{key}'");
    Ok(match ty {
        ValueType::U8 => Value::U8(c.array::<1>(&what)?[0]),
        ValueType::I8 => Value::I8(i8::from_le_bytes(c.array(&what)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.array(&what)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.array(&what)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(c.array(&what)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.array(&what)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.array(&what)?)),
        ValueType::Bool => Value::Bool(c.array::<1>(&what)?[0] != 0),
        ValueType::U64 => Value::U64(u64::from_le_bytes(c.array(&what)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.array(&what)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.array(&what)?)),
        ValueType::String => Value::String(c.string(&what)?.to_vec()),
        ValueType::Array => {
            check_array_depth(key, depth)?;
            let et = c.u32(&what)?;
            let elem_type = ValueType::from_u32(et).ok_or_else(|| Error::UnknownValueType {
                key: key.to_string(),
                ty: et,
            })?;
            // Strings are at least their 8-byte length, arrays their 12-byte header.
            let min = match elem_type {
                ValueType::String => 8,
                ValueType::Array => 12,
                t => t.fixed_size().unwrap_or(1),
            };
            let n = c.count(min, &|| format!("array length of key '{key}'"))?;
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(read_value(c, elem_type, key, depth + 1)?);
            }
            Value::Array(Array { elem_type, items })
        }
    })
}

/// A GGUF file mapped into memory.
pub struct MappedGguf {
    path: PathBuf,
    map: memmap2::Mmap,
}

impl MappedGguf {
    /// Maps `path` read-only. Errors name the file.
    pub fn open(path: impl AsRef<Path>) -> Result<MappedGguf> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).with_path(path)?;
        let map = crate::mmap::map_readonly(&file).with_path(path)?;
        Ok(MappedGguf {
            path: path.to_path_buf(),
            map,
        })
    }

    /// Parses the mapped bytes. Errors name the file.
    pub fn parse(&self) -> Result<Gguf<'_>> {
        Gguf::parse(&self.map).with_path(&self.path)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
