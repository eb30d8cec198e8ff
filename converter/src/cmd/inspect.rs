//! `fairy2i inspect`: a GGUF file's KVs (arrays summarised), its tensor table, totals per type and
//! the overall bits per weight.

use std::collections::BTreeMap;
use std::fmt::Write;

use fairy2i_format::gguf::MappedGguf;
use fairy2i_format::GgmlType;

use crate::cli::InspectArgs;
use crate::error::Result;
use crate::report::bpw;

/// Runs `inspect`, printing to stdout.
pub fn run(args: &InspectArgs) -> Result<()> {
    let text = render(&args.file, args.max_items)?;
    super::print_out(&text)
}

/// The listing of `path` (the path itself does not appear in it).
pub fn render(path: &std::path::Path, max_items: usize) -> Result<String> {
    let mapped = MappedGguf::open(path)?;
    let g = mapped.parse()?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "GGUF v{}: {} key/value pairs, {} tensors, alignment {}, data at {}",
        g.version,
        g.metadata.len(),
        g.tensors.len(),
        g.alignment,
        g.data_offset
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "{:<48} {:<5} value", "key", "type");
    for (k, v) in g.metadata.iter() {
        let ty = match v.as_array() {
            Some(a) => format!("{}[]", a.elem_type.name()),
            None => v.value_type().name().to_string(),
        };
        let _ = writeln!(s, "{:<48} {:<5} {}", k, ty, v.summary(max_items));
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<40} {:<7} {:<22} {:>12} {:>7}",
        "tensor", "type", "shape (ne)", "bytes", "bpw"
    );
    let mut per_type: BTreeMap<GgmlType, (usize, u64, u64)> = BTreeMap::new();
    let (mut bytes, mut elements) = (0u64, 0u64);
    for t in &g.tensors {
        let shape = t
            .dims
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(" x ");
        let n = t.n_elements();
        let _ = writeln!(
            s,
            "{:<40} {:<7} {:<22} {:>12} {:>7.3}",
            t.name,
            t.ty.name(),
            shape,
            t.size,
            bpw(t.size, n)
        );
        let e = per_type.entry(t.ty).or_insert((0, 0, 0));
        e.0 += 1;
        e.1 += t.size;
        e.2 += n;
        bytes += t.size;
        elements += n;
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<10} {:>8} {:>14} {:>14} {:>7}",
        "type", "tensors", "elements", "bytes", "bpw"
    );
    for (ty, (count, b, e)) in &per_type {
        let _ = writeln!(
            s,
            "{:<10} {:>8} {:>14} {:>14} {:>7.3}",
            ty.name(),
            count,
            e,
            b,
            bpw(*b, *e)
        );
    }
    let _ = writeln!(
        s,
        "{:<10} {:>8} {:>14} {:>14} {:>7.3}",
        "total",
        g.tensors.len(),
        elements,
        bytes,
        bpw(bytes, elements)
    );
    Ok(s)
}
