//! Progress bars (hidden when stderr is not a terminal) and the closing summary table.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use fairy2i_format::GgmlType;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// An overall bar (bytes of input) and a line for the tensor being converted.
pub struct Progress {
    overall: ProgressBar,
    current: ProgressBar,
    _multi: MultiProgress,
}

impl Progress {
    /// Bars for `total` input bytes; hidden when `quiet` or stderr is not a terminal.
    pub fn new(total: u64, n_tensors: usize, quiet: bool) -> Progress {
        let target = if quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let multi = MultiProgress::with_draw_target(target);
        let overall = multi.add(ProgressBar::new(total));
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} ({msg})",
        ) {
            overall.set_style(style);
        }
        overall.set_message(format!("0/{n_tensors} tensors"));
        let current = multi.add(ProgressBar::new_spinner());
        current.enable_steady_tick(Duration::from_millis(200));
        Progress {
            overall,
            current,
            _multi: multi,
        }
    }

    /// A tensor starts.
    pub fn start(&self, index: usize, n: usize, name: &str, ty: GgmlType) {
        self.current
            .set_message(format!("[{}/{n}] {name} -> {ty}", index + 1));
        self.overall.set_message(format!("{index}/{n} tensors"));
    }

    /// A tensor of `bytes` input bytes is done.
    pub fn done(&self, bytes: u64) {
        self.overall.inc(bytes);
    }

    /// Removes the bars.
    pub fn finish(&self) {
        self.current.finish_and_clear();
        self.overall.finish_and_clear();
    }
}

/// One fallback, for the summary.
#[derive(Debug, Clone)]
pub struct Fallback {
    /// Tensor.
    pub name: String,
    /// Type wanted.
    pub wanted: GgmlType,
    /// Type used.
    pub used: GgmlType,
    /// Why.
    pub reason: String,
}

/// One written tensor, for the per-tensor listing.
#[derive(Debug, Clone)]
pub struct TensorLine {
    /// Tensor.
    pub name: String,
    /// Type written.
    pub ty: GgmlType,
    /// Where the type came from (empty for tensors kept as they are).
    pub note: String,
}

/// Counts per output type, fallbacks and timing.
pub struct Summary {
    per_type: BTreeMap<GgmlType, (usize, u64, u64)>,
    /// Every tensor written, in file order (listed first when not empty).
    pub tensors: Vec<TensorLine>,
    /// Fallbacks, in file order.
    pub fallbacks: Vec<Fallback>,
    /// The imatrix file given, tensors weighted by it (F2I and k-quants), and those it has no entry
    /// for.
    pub imatrix: Option<(String, usize, Vec<String>)>,
    start: Instant,
    input_bytes: u64,
}

impl Summary {
    /// An empty summary; the clock starts now.
    pub fn new() -> Summary {
        Summary {
            per_type: BTreeMap::new(),
            tensors: Vec::new(),
            fallbacks: Vec::new(),
            imatrix: None,
            start: Instant::now(),
            input_bytes: 0,
        }
    }

    /// Records a written tensor.
    pub fn add(&mut self, ty: GgmlType, elements: u64, bytes: u64, input_bytes: u64) {
        let e = self.per_type.entry(ty).or_insert((0, 0, 0));
        e.0 += 1;
        e.1 += bytes;
        e.2 += elements;
        self.input_bytes += input_bytes;
    }

    /// Input bytes converted so far and the seconds since the start.
    pub fn throughput(&self) -> (u64, f64) {
        (self.input_bytes, self.start.elapsed().as_secs_f64())
    }

    /// The table, as text, closing with where it was written and how fast.
    pub fn render(&self, output: &std::path::Path) -> String {
        use std::fmt::Write;
        let secs = self.start.elapsed().as_secs_f64();
        let mut s = self.render_tables();
        let mbs = self.input_bytes as f64 / 1e6 / secs.max(1e-9);
        let _ = writeln!(
            s,
            "wrote {} in {:.2} s ({:.1} MB/s of input)",
            output.display(),
            secs,
            mbs
        );
        s
    }

    /// The table of a dry run (`quantize --dry-run`): nothing was written.
    pub fn render_plan(&self) -> String {
        let mut s = self.render_tables();
        s.push_str("dry run: nothing quantized or written\n");
        s
    }

    /// The per-tensor listing, the per-type table, fallbacks and the imatrix line.
    fn render_tables(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        if !self.tensors.is_empty() {
            let width = self.tensors.iter().map(|t| t.name.len()).max().unwrap_or(0);
            for t in &self.tensors {
                let line = format!("{:<width$}  {:<8} {}", t.name, t.ty.name(), t.note);
                let _ = writeln!(s, "{}", line.trim_end());
            }
        }
        let _ = writeln!(
            s,
            "{:<10} {:>8} {:>14} {:>8}",
            "type", "tensors", "bytes", "bpw"
        );
        let (mut n, mut b, mut e) = (0usize, 0u64, 0u64);
        for (ty, (count, bytes, elements)) in &self.per_type {
            let _ = writeln!(
                s,
                "{:<10} {:>8} {:>14} {:>8.3}",
                ty.name(),
                count,
                bytes,
                bpw(*bytes, *elements)
            );
            n += count;
            b += bytes;
            e += elements;
        }
        let _ = writeln!(s, "{:<10} {:>8} {:>14} {:>8.3}", "total", n, b, bpw(b, e));
        if !self.fallbacks.is_empty() && !self.tensors.is_empty() {
            // The per-tensor listing above gives each fallback and its reason.
            let _ = writeln!(s, "fallbacks: {} (listed above)", self.fallbacks.len());
        } else if !self.fallbacks.is_empty() {
            let _ = writeln!(s, "fallbacks ({}):", self.fallbacks.len());
            for f in &self.fallbacks {
                let _ = writeln!(
                    s,
                    "  {:<32} {} instead of {}: {}",
                    f.name, f.used, f.wanted, f.reason
                );
            }
        }
        if let Some((file, used, missing)) = &self.imatrix {
            let _ = writeln!(
                s,
                "imatrix {file}: {used} tensors weighted (F2I and k-quants), {} without an entry (unweighted){}",
                missing.len(),
                if missing.is_empty() { "" } else { ":" }
            );
            for name in missing.iter().take(8) {
                let _ = writeln!(s, "  {name}");
            }
            if missing.len() > 8 {
                let _ = writeln!(s, "  … and {} more", missing.len() - 8);
            }
        }
        s
    }
}

impl Default for Summary {
    fn default() -> Self {
        Summary::new()
    }
}

/// Bits per weight.
pub fn bpw(bytes: u64, elements: u64) -> f64 {
    if elements == 0 {
        0.0
    } else {
        bytes as f64 * 8.0 / elements as f64
    }
}
