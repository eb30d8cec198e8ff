//! llama.cpp importance matrices (`llama-imatrix` output, b11434), read for weighted quantization.
//!
//! Both formats that `llama-imatrix` writes and `llama-quantize` reads:
//! - **GGUF** (the default): for each weight `<name>` an F32 tensor `<name>.in_sum2` of shape
//!   [ne0, n_mat] (the sum over calibration tokens of each input's squared activation, per expert) and an
//!   F32 tensor `<name>.counts` of shape [1, n_mat] (tokens seen, per expert); an optional `<name>.in_sum`
//!   and per-tensor statistics are ignored here. Importance = in_sum2 / count per expert; an expert with
//!   count 0 gets importance 1 (as `llama-quantize` does).
//! - **legacy `.dat`** (`--output-format dat`), little-endian: i32 n_entries; per entry i32 name length,
//!   the name bytes, i32 ncall, i32 nval, nval f32 values (the mean squared activation × ncall); then,
//!   optionally, i32 chunk count, i32 dataset-name length and the name. Importance = value / ncall
//!   (the value itself where ncall ≤ 0), as `llama-quantize` does.
//!
//! Every length is checked against the bytes that remain, so a truncated file or a lying size is an
//! [`Error::Imatrix`] that names the entry and field (and, through [`Imatrix::load`], the file).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, PathContext, Result};
use crate::gguf::Gguf;
use crate::types::GgmlType;

/// The file format an imatrix was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImatrixFormat {
    /// The legacy binary `.dat` layout.
    Legacy,
    /// The GGUF layout (`.in_sum2` / `.counts` tensors).
    Gguf,
}

/// One weight's importance: the mean squared activation of each input, per expert.
#[derive(Debug, Clone, PartialEq)]
pub struct ImatrixEntry {
    /// `n_mat × ne0` values, expert-major.
    pub values: Vec<f32>,
    /// Number of experts (1 for an ordinary weight).
    pub n_mat: usize,
}

/// A parsed importance-matrix file.
#[derive(Debug, Clone)]
pub struct Imatrix {
    /// Which layout the file had.
    pub format: ImatrixFormat,
    /// Entries by weight name (e.g. `blk.0.ffn_down.weight`).
    pub entries: BTreeMap<String, ImatrixEntry>,
    /// Chunks the statistics were collected over, where the file says.
    pub chunk_count: Option<u64>,
    /// Calibration data set names, where the file says.
    pub datasets: Vec<String>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Imatrix(msg.into())
}

impl Imatrix {
    /// Reads and parses an imatrix file; errors name the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Imatrix> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).with_path(path)?;
        Imatrix::parse(&bytes).with_path(path)
    }

    /// Parses the bytes of an imatrix file of either format (GGUF when it starts with "GGUF").
    pub fn parse(bytes: &[u8]) -> Result<Imatrix> {
        if bytes.starts_with(b"GGUF") {
            parse_gguf(bytes)
        } else {
            parse_legacy(bytes)
        }
    }

    /// The importance of the inputs of the 2-D weight `name` whose rows have `k` inputs: `Ok(None)` if
    /// the file has no entry for it, an error if the entry is per-expert or of another length.
    pub fn importance(&self, name: &str, k: usize) -> Result<Option<&[f32]>> {
        let Some(e) = self.entries.get(name) else {
            return Ok(None);
        };
        if e.n_mat != 1 {
            return Err(bad(format!(
                "entry '{name}' holds {} experts; a 2-D weight needs one",
                e.n_mat
            )));
        }
        if e.values.len() != k {
            return Err(bad(format!(
                "entry '{name}' has {} values, the weight's rows have {k} inputs",
                e.values.len()
            )));
        }
        Ok(Some(&e.values))
    }
}

/// A little-endian reader over the legacy layout.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(bad(format!(
                "truncated: {} at offset {} needs {n} bytes, {left} left",
                what(),
                self.pos
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn i32(&mut self, what: &dyn Fn() -> String) -> Result<i32> {
        let b = self.take(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }
}

fn parse_legacy(bytes: &[u8]) -> Result<Imatrix> {
    let mut r = Reader { bytes, pos: 0 };
    let n_entries = r.i32(&|| "the entry count".into())?;
    if n_entries < 1 {
        return Err(bad(format!(
            "legacy .dat: entry count {n_entries} (a file needs at least one entry)"
        )));
    }
    let mut entries = BTreeMap::new();
    for i in 0..n_entries {
        let at = |f: &str| format!("entry {} of {n_entries}: {f}", i + 1);
        let len = r.i32(&|| at("name length"))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| bad(at(&format!("name length {len} is not positive"))))?;
        let name = std::str::from_utf8(r.take(len, &|| at(&format!("name (length {len})")))?)
            .map_err(|_| bad(at("name is not UTF-8")))?
            .to_string();
        let at = |f: &str| format!("entry '{name}': {f}");
        let ncall = r.i32(&|| at("ncall"))?;
        let nval = r.i32(&|| at("value count"))?;
        let nval = usize::try_from(nval)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| bad(at(&format!("value count {nval} is not positive"))))?;
        let raw = r.take(nval.saturating_mul(4), &|| {
            at(&format!("{nval} values (value count)"))
        })?;
        let div = if ncall > 0 { ncall as f32 } else { 1.0 };
        let values: Vec<f32> = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) / div)
            .collect();
        check_values(&name, &values)?;
        if entries
            .insert(name.clone(), ImatrixEntry { values, n_mat: 1 })
            .is_some()
        {
            return Err(bad(format!("entry '{name}' appears twice")));
        }
    }
    // Optional trailer: chunk count, then the data set name.
    let mut chunk_count = None;
    let mut datasets = Vec::new();
    if r.left() > 0 {
        let c = r.i32(&|| "the trailing chunk count".into())?;
        chunk_count = u64::try_from(c).ok();
        if r.left() > 0 {
            let len = r.i32(&|| "the data set name length".into())?;
            let len = usize::try_from(len)
                .map_err(|_| bad(format!("data set name length {len} is negative")))?;
            let s = r.take(len, &|| format!("the data set name (length {len})"))?;
            if len > 0 {
                datasets.push(String::from_utf8_lossy(s).into_owned());
            }
        }
        if r.left() > 0 {
            return Err(bad(format!(
                "{} unexpected bytes after the data set name at offset {}",
                r.left(),
                r.pos
            )));
        }
    }
    Ok(Imatrix {
        format: ImatrixFormat::Legacy,
        entries,
        chunk_count,
        datasets,
    })
}

fn check_values(name: &str, values: &[f32]) -> Result<()> {
    if let Some((i, v)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
    {
        return Err(bad(format!(
            "entry '{name}': value {i} is {v} (mean squared activations are finite and ≥ 0)"
        )));
    }
    Ok(())
}

fn f32s(g: &Gguf<'_>, name: &str) -> Result<Vec<f32>> {
    let t = g
        .tensor(name)
        .ok_or_else(|| bad(format!("tensor '{name}' is missing")))?;
    if t.ty != GgmlType::F32 {
        return Err(bad(format!(
            "tensor '{name}' is {}, expected f32",
            t.ty.name()
        )));
    }
    let data = g.tensor_data(t);
    Ok(data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn parse_gguf(bytes: &[u8]) -> Result<Imatrix> {
    let g = Gguf::parse(bytes)?;
    let mut names: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for t in &g.tensors {
        if let Some(base) = t.name.strip_suffix(".in_sum2") {
            names.entry(base.to_string()).or_default().0 = true;
        } else if let Some(base) = t.name.strip_suffix(".counts") {
            names.entry(base.to_string()).or_default().1 = true;
        }
    }
    if names.is_empty() {
        return Err(bad(
            "GGUF has no '<name>.in_sum2' / '<name>.counts' tensors: not an imatrix",
        ));
    }
    let mut entries = BTreeMap::new();
    for (name, (has_sums, has_counts)) in names {
        if !(has_sums && has_counts) {
            let missing = if has_sums { "counts" } else { "in_sum2" };
            return Err(bad(format!("entry '{name}' has no '{name}.{missing}'")));
        }
        let sums = f32s(&g, &format!("{name}.in_sum2"))?;
        let counts = f32s(&g, &format!("{name}.counts"))?;
        let n_mat = counts.len();
        if n_mat == 0 || sums.is_empty() || !sums.len().is_multiple_of(n_mat) {
            return Err(bad(format!(
                "entry '{name}': {} sums do not split into {n_mat} experts",
                sums.len()
            )));
        }
        let ne0 = sums.len() / n_mat;
        let mut values = Vec::with_capacity(sums.len());
        for (j, (&c, s)) in counts.iter().zip(sums.chunks_exact(ne0)).enumerate() {
            if !(c.is_finite() && c >= 0.0) {
                return Err(bad(format!("entry '{name}': count {j} is {c}")));
            }
            let c = c.round();
            if c > 0.0 {
                values.extend(s.iter().map(|&v| v / c));
            } else {
                values.extend(std::iter::repeat_n(1.0, ne0));
            }
        }
        check_values(&name, &values)?;
        entries.insert(name, ImatrixEntry { values, n_mat });
    }
    let md = &g.metadata;
    let datasets = md
        .get("imatrix.datasets")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(Imatrix {
        format: ImatrixFormat::Gguf,
        entries,
        chunk_count: md.get_u64("imatrix.chunk_count"),
        datasets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A legacy file in the documented layout.
    pub(crate) fn legacy(entries: &[(&str, i32, &[f32])], trailer: Option<(i32, &str)>) -> Vec<u8> {
        let mut b = (entries.len() as i32).to_le_bytes().to_vec();
        for (name, ncall, vals) in entries {
            b.extend((name.len() as i32).to_le_bytes());
            b.extend(name.as_bytes());
            b.extend(ncall.to_le_bytes());
            b.extend((vals.len() as i32).to_le_bytes());
            for v in *vals {
                b.extend(v.to_le_bytes());
            }
        }
        if let Some((chunks, ds)) = trailer {
            b.extend(chunks.to_le_bytes());
            b.extend((ds.len() as i32).to_le_bytes());
            b.extend(ds.as_bytes());
        }
        b
    }

    #[test]
    fn legacy_values_are_divided_by_ncall() {
        let b = legacy(
            &[("a.weight", 4, &[4.0, 8.0]), ("b.weight", 0, &[3.0])],
            Some((10, "wiki.txt")),
        );
        let m = Imatrix::parse(&b).unwrap();
        assert_eq!(m.format, ImatrixFormat::Legacy);
        assert_eq!(m.importance("a.weight", 2).unwrap(), Some(&[1.0, 2.0][..]));
        assert_eq!(m.importance("b.weight", 1).unwrap(), Some(&[3.0][..]));
        assert_eq!(m.importance("c.weight", 1).unwrap(), None);
        assert_eq!(m.chunk_count, Some(10));
        assert_eq!(m.datasets, ["wiki.txt"]);
        let e = m.importance("a.weight", 3).unwrap_err().to_string();
        assert!(
            e.contains("'a.weight' has 2 values") && e.contains("3 inputs"),
            "{e}"
        );
        // The trailer is optional.
        let b = legacy(&[("a.weight", 1, &[1.0])], None);
        assert_eq!(Imatrix::parse(&b).unwrap().chunk_count, None);
    }

    /// (name, type, dims, f32 values) of a test tensor.
    type Spec<'a> = (&'a str, GgmlType, Vec<u64>, Vec<f32>);

    /// A GGUF imatrix of the given tensors, as bytes.
    fn gguf(tensors: &[Spec<'_>]) -> Vec<u8> {
        use crate::gguf::{GgufWriter, Metadata, TensorSpec, Value};
        let dir = std::env::temp_dir().join(format!("f2i-imat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.gguf", tensors.len()));
        let mut md = Metadata::new();
        md.set("general.type", Value::str("imatrix"));
        md.set("imatrix.datasets", Value::str_array(["wiki.txt"]));
        md.set("imatrix.chunk_count", Value::U32(20));
        md.set("imatrix.chunk_size", Value::U32(512));
        let specs = tensors
            .iter()
            .map(|(n, ty, dims, _)| TensorSpec {
                name: n.to_string(),
                dims: dims.clone(),
                ty: *ty,
            })
            .collect();
        let mut w = GgufWriter::create(&path, &md, specs).unwrap();
        for (_, _, _, v) in tensors {
            w.write_tensor(bytemuck::cast_slice(v)).unwrap();
        }
        w.finish().unwrap();
        let b = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        b
    }

    #[test]
    fn gguf_sums_are_divided_by_per_expert_counts() {
        let b = gguf(&[
            (
                "a.weight.in_sum2",
                GgmlType::F32,
                vec![2, 1],
                vec![6.0, 9.0],
            ),
            ("a.weight.counts", GgmlType::F32, vec![1, 1], vec![3.0]),
            (
                "e.weight.in_sum2",
                GgmlType::F32,
                vec![2, 2],
                vec![4.0, 8.0, 5.0, 7.0],
            ),
            ("e.weight.counts", GgmlType::F32, vec![1, 2], vec![4.0, 0.0]),
        ]);
        let m = Imatrix::parse(&b).unwrap();
        assert_eq!(m.format, ImatrixFormat::Gguf);
        assert_eq!(m.importance("a.weight", 2).unwrap(), Some(&[2.0, 3.0][..]));
        let e = &m.entries["e.weight"];
        // Expert 1 saw no tokens: importance 1, as llama-quantize does.
        assert_eq!((e.n_mat, &e.values[..]), (2, &[1.0, 2.0, 1.0, 1.0][..]));
        let err = m.importance("e.weight", 2).unwrap_err().to_string();
        assert!(err.contains("2 experts"), "{err}");
        assert_eq!(
            (m.chunk_count, &m.datasets[..]),
            (Some(20), &["wiki.txt".to_string()][..])
        );
    }

    #[test]
    fn hostile_gguf_imatrices_are_named_errors() {
        let f = GgmlType::F32;
        let cases: [(Vec<Spec<'_>>, &str); 5] = [
            (
                vec![("a.in_sum2", f, vec![2, 1], vec![1.0, 1.0])],
                "'a' has no 'a.counts'",
            ),
            (
                vec![("x.weight", f, vec![1, 1], vec![1.0])],
                "not an imatrix",
            ),
            (
                vec![
                    ("a.in_sum2", f, vec![3, 1], vec![1.0; 3]),
                    ("a.counts", f, vec![1, 2], vec![1.0, 1.0]),
                ],
                "3 sums do not split into 2 experts",
            ),
            (
                vec![
                    ("a.in_sum2", f, vec![2, 1], vec![1.0, 1.0]),
                    ("a.counts", f, vec![1, 1], vec![-2.0]),
                ],
                "count 0 is -2",
            ),
            (
                vec![
                    ("a.in_sum2", f, vec![2, 1], vec![1.0, -1.0]),
                    ("a.counts", f, vec![1, 1], vec![1.0]),
                ],
                "value 1 is -1",
            ),
        ];
        for (tensors, want) in cases {
            let e = Imatrix::parse(&gguf(&tensors)).unwrap_err().to_string();
            assert!(e.contains(want), "want '{want}': {e}");
        }
        // A GGUF whose sums are not F32.
        let b = gguf(&[
            ("a.in_sum2", GgmlType::F16, vec![2, 1], vec![0.0]),
            ("a.counts", f, vec![1, 1], vec![1.0]),
        ]);
        let e = Imatrix::parse(&b).unwrap_err().to_string();
        assert!(e.contains("'a.in_sum2' is f16, expected f32"), "{e}");
        // Truncated GGUF: the reader's own error.
        let good = gguf(&[
            ("a.in_sum2", f, vec![2, 1], vec![1.0, 1.0]),
            ("a.counts", f, vec![1, 1], vec![1.0]),
        ]);
        let data_end = {
            let g = Gguf::parse(&good).unwrap();
            let last = g.tensors.iter().max_by_key(|t| t.offset).unwrap();
            (g.data_offset + last.offset + last.size) as usize
        };
        for cut in [good.len() / 2, data_end - 1] {
            assert!(Imatrix::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn hostile_legacy_files_are_named_errors() {
        let good = legacy(&[("a.weight", 2, &[1.0, 2.0])], Some((1, "x")));
        // Every truncation is an error, except exactly at the end of an entry list (no trailer) or
        // after the chunk count (no data set name).
        let body = good.len() - 4 - 4 - 1;
        for cut in 0..good.len() {
            let r = Imatrix::parse(&good[..cut]);
            if cut == body || cut == body + 4 {
                assert!(r.is_ok(), "cut {cut}");
            } else {
                let e = r.unwrap_err().to_string();
                assert!(e.starts_with("imatrix: "), "cut {cut}: {e}");
            }
        }
        let mut lying = good.clone();
        lying[4..8].copy_from_slice(&1_000_000i32.to_le_bytes()); // name length
        let e = Imatrix::parse(&lying).unwrap_err().to_string();
        assert!(
            e.contains("truncated: entry 1 of 1: name (length 1000000)"),
            "{e}"
        );
        let mut lying = good.clone();
        lying[20..24].copy_from_slice(&(i32::MAX).to_le_bytes()); // value count
        let e = Imatrix::parse(&lying).unwrap_err().to_string();
        assert!(
            e.contains("truncated: entry 'a.weight': 2147483647 values"),
            "{e}"
        );
        let mut neg = good.clone();
        neg[0..4].copy_from_slice(&(-3i32).to_le_bytes());
        assert!(Imatrix::parse(&neg)
            .unwrap_err()
            .to_string()
            .contains("entry count -3"));
        let nan = legacy(&[("a.weight", 1, &[f32::NAN])], None);
        assert!(Imatrix::parse(&nan)
            .unwrap_err()
            .to_string()
            .contains("value 0 is NaN"));
        let twice = legacy(&[("a", 1, &[1.0]), ("a", 1, &[1.0])], None);
        assert!(Imatrix::parse(&twice)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let mut extra = good.clone();
        extra.push(0);
        assert!(Imatrix::parse(&extra)
            .unwrap_err()
            .to_string()
            .contains("unexpected bytes"));
        assert!(Imatrix::parse(&[]).is_err());
    }
}
