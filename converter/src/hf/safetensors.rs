//! The safetensors shards of a checkpoint, memory-mapped. Headers are validated by the `safetensors`
//! crate (offsets contiguous, sizes = dtype × shape, data covering the file exactly), then each
//! tensor is a byte range of its shard's map.
//!
//! Order (as llama.cpp's converter): shards in sorted file-name order (from the index's `weight_map`
//! when there is one, else every `model*.safetensors`), tensors sorted by name inside each shard.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde_json::Value as Json;

use crate::error::{Error, IoContext, Result};
use crate::hf::config::read_json;

/// Element types a checkpoint tensor may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrcDtype {
    /// IEEE float32.
    F32,
    /// IEEE float16.
    F16,
    /// bfloat16.
    BF16,
}

impl SrcDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            SrcDtype::F32 => 4,
            SrcDtype::F16 | SrcDtype::BF16 => 2,
        }
    }

    /// Decodes little-endian elements into f32 (exact for all three types).
    pub fn decode(self, bytes: &[u8], out: &mut [f32]) {
        match self {
            SrcDtype::F32 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            SrcDtype::F16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
                }
            }
            SrcDtype::BF16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
                }
            }
        }
    }
}

/// One memory-mapped shard.
pub struct Shard {
    /// Its path.
    pub path: PathBuf,
    map: Mmap,
}

/// One tensor of the checkpoint.
#[derive(Debug, Clone)]
pub struct SrcTensor {
    /// Hugging Face name.
    pub name: String,
    /// Index of its shard.
    pub shard: usize,
    /// Element type.
    pub dtype: SrcDtype,
    /// PyTorch shape.
    pub shape: Vec<u64>,
    /// Byte range in the shard's map.
    range: (usize, usize),
}

impl SrcTensor {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// All shards and their tensors, in conversion order.
pub struct Checkpoint {
    /// The shards.
    pub shards: Vec<Shard>,
    /// The tensors in order.
    pub tensors: Vec<SrcTensor>,
}

impl Checkpoint {
    /// Opens the shards of the model folder `dir`.
    pub fn open(dir: &Path) -> Result<Checkpoint> {
        let index_path = dir.join("model.safetensors.index.json");
        let (shard_names, index_names) = if index_path.is_file() {
            let index = read_json(&index_path)?;
            let Some(Json::Object(map)) = index.get("weight_map") else {
                return Err(Error::BadIndex { path: index_path });
            };
            let mut names = BTreeMap::new();
            for (tensor, file) in map {
                let Some(file) = file.as_str() else {
                    return Err(Error::BadIndex { path: index_path });
                };
                names.insert(tensor.clone(), file.to_string());
            }
            let shards: BTreeSet<String> = names.values().cloned().collect();
            for s in &shards {
                // The index names files in this folder, nothing else.
                if s.contains('/') || s.contains('\\') || s == ".." {
                    return Err(Error::BadIndex { path: index_path });
                }
                if !dir.join(s).is_file() {
                    return Err(Error::ShardMissing {
                        path: index_path,
                        shard: s.clone(),
                    });
                }
            }
            (shards.into_iter().collect::<Vec<_>>(), Some(names))
        } else {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(dir).at(dir)? {
                let entry = entry.at(dir)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("model") && name.ends_with(".safetensors") {
                    names.push(name);
                }
            }
            names.sort();
            (names, None)
        };
        if shard_names.is_empty() {
            return Err(Error::NoWeights {
                path: dir.to_path_buf(),
            });
        }

        let mut shards = Vec::with_capacity(shard_names.len());
        let mut tensors = Vec::new();
        let mut seen = BTreeSet::new();
        for (si, file) in shard_names.iter().enumerate() {
            let path = dir.join(file);
            let f = std::fs::File::open(&path).at(&path)?;
            let map = fairy2i_format::mmap::map_readonly(&f).at(&path)?;
            let (n, meta) = safetensors::SafeTensors::read_metadata(&map).map_err(|source| {
                Error::Safetensors {
                    path: path.clone(),
                    source,
                }
            })?;
            let base = n + 8;
            let mut list: Vec<(String, SrcTensor)> = Vec::new();
            for (name, info) in meta.tensors() {
                let dtype = match info.dtype {
                    safetensors::Dtype::F32 => SrcDtype::F32,
                    safetensors::Dtype::F16 => SrcDtype::F16,
                    safetensors::Dtype::BF16 => SrcDtype::BF16,
                    other => {
                        return Err(Error::UnsupportedDtype {
                            path,
                            tensor: name,
                            dtype: format!("{other:?}"),
                        })
                    }
                };
                let (a, b) = info.data_offsets;
                let t = SrcTensor {
                    name: name.clone(),
                    shard: si,
                    dtype,
                    shape: info.shape.iter().map(|&d| d as u64).collect(),
                    range: (base + a, base + b),
                };
                list.push((name, t));
            }
            list.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, t) in list {
                if let Some(index) = &index_names {
                    if !index.contains_key(&name) {
                        return Err(Error::IndexMismatch {
                            path: index_path.clone(),
                            tensor: name,
                            problem: "is in a shard but not in the index",
                        });
                    }
                }
                // A name in two shards: the first position wins (as a Python dict), the data of the last.
                if seen.insert(name.clone()) {
                    tensors.push(t);
                } else if let Some(slot) = tensors.iter_mut().find(|x| x.name == name) {
                    *slot = t;
                }
            }
            shards.push(Shard { path, map });
        }
        if let Some(index) = &index_names {
            if let Some(name) = index.keys().find(|k| !seen.contains(*k)) {
                return Err(Error::IndexMismatch {
                    path: index_path,
                    tensor: name.clone(),
                    problem: "is in the index but in no shard",
                });
            }
        }
        Ok(Checkpoint { shards, tensors })
    }

    /// The bytes of a tensor.
    pub fn data(&self, t: &SrcTensor) -> &[u8] {
        self.shards
            .get(t.shard)
            .and_then(|s| s.map.get(t.range.0..t.range.1))
            .unwrap_or(&[])
    }

    /// The path of a tensor's shard.
    pub fn path_of(&self, t: &SrcTensor) -> &Path {
        self.shards
            .get(t.shard)
            .map(|s| s.path.as_path())
            .unwrap_or(Path::new(""))
    }
}
