//! Helpers shared by the end-to-end tests: where the cache, the patched llama.cpp build and our
//! `fairy2i` binary are, and running a tool with a time limit.
//!
//! The skip rule and the input folders are [`fixtures`] (re-exported here), the one copy every crate's
//! tests use: a test that cannot run because something large is missing calls [`skip`], which prints a
//! loud `SKIPPED:` line with the reason, and fails instead when `FAIRY2I_REQUIRE_FIXTURES=1` (as
//! `.ci/run` sets), so CI never passes by skipping.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub mod fixtures;
pub use fixtures::{
    cache_dir, llama_build_dir, optional, present, required, shared_dir, skip, test_name, workspace,
};

/// A file under the cache's `models/` (filled by `scripts/fetch-models.sh`), if present.
pub fn model(name: &str) -> Option<PathBuf> {
    let p = cache_dir().join("models").join(name);
    p.is_file().then_some(p)
}

/// SmolLM2-135M-Instruct Q4_1 (most matrices have K = 576, so they fall back; ffn_down is F2I).
pub const SMOLLM: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Qwen2.5-Coder-1.5B-Instruct Q4_K_M (every matrix fits F2I).
pub const QWEN: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";

/// The evaluation text (`wiki.utf8`), if present.
pub fn wiki_text() -> Option<PathBuf> {
    let p = cache_dir().join("text/wiki.utf8");
    p.is_file().then_some(p)
}

/// The patched llama.cpp build (the directory `ffi/build-llama.sh` prints; tools and our plugin in
/// `bin/`): [`llama_build_dir`] when that build exists.
pub fn llama_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = llama_build_dir()?;
        let ok =
            dir.join("bin/llama-simple").is_file() && dir.join("bin/libggml-fairy2i.so").is_file();
        ok.then_some(dir)
    })
    .clone()
}

/// A tool of the patched build, e.g. `llama-completion`.
pub fn llama_tool(dir: &Path, name: &str) -> PathBuf {
    dir.join("bin").join(name)
}

/// Our `fairy2i` binary, built with the same profile as this test if needed.
pub fn fairy2i() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let release = !cfg!(debug_assertions);
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace()).args([
            "build",
            "-q",
            "-p",
            "fairy2i-converter",
            "--bin",
            "fairy2i",
        ]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build for fairy2i");
        assert!(status.success(), "cargo build -p fairy2i-converter failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"));
        target
            .join(if release { "release" } else { "debug" })
            .join("fairy2i")
    })
    .clone()
}

/// Serialises the heavy steps (conversions, llama.cpp runs) of all tests in one binary: the machine
/// has 2 cores, and timings of parallel runs would mean nothing.
pub fn heavy() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Output of a finished command, with both streams as text.
pub struct Run {
    /// Exit status code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Panics with both streams unless the command exited 0.
    pub fn ok(self, what: &str) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "{what} failed\n--- stdout\n{}\n--- stderr\n{}",
            tail(&self.stdout, 4000),
            tail(&self.stderr, 8000)
        );
        self
    }
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    &s[start..]
}

/// Runs `cmd` to completion, killing it after `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> Run {
    let what = format!("{cmd:?}");
    let out_file = tempfile::tempfile().expect("temp file");
    let err_file = tempfile::tempfile().expect("temp file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out_file.try_clone().expect("dup"))
        .stderr(err_file.try_clone().expect("dup"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |mut f: std::fs::File| {
        use std::io::{Read, Seek};
        let mut s = Vec::new();
        f.rewind().expect("rewind");
        f.read_to_end(&mut s).expect("read");
        String::from_utf8_lossy(&s).into_owned()
    };
    Run {
        code: status.code(),
        stdout: read(out_file),
        stderr: read(err_file),
    }
}

/// The output of a command that must succeed.
pub fn output(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A directory that outlives one test but not the test binary's purpose: converted models are
/// reused by several tests of one run. Lives under the target dir, never in the source tree.
pub fn scratch_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let d = target.join("fairy2i-e2e");
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// Converts (`fairy2i quantize`) `src` to `ty`, once per test binary run, into the scratch dir.
pub fn quantized(src: &Path, ty: &str, extra: &[&str]) -> PathBuf {
    static DONE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let stem = src
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tag = extra.join("").replace(['-', ' ', '/'], "");
    let out = scratch_dir().join(format!("{stem}.{ty}{tag}.gguf"));
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if !done.contains(&out) {
        let mut cmd = Command::new(fairy2i());
        cmd.arg("quantize")
            .arg(src)
            .arg(&out)
            .args(["--type", ty])
            .args(extra);
        run(&mut cmd, Duration::from_secs(900)).ok("fairy2i quantize");
        done.push(out.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::fixtures::requires;

    #[test]
    fn only_the_value_1_requires_fixtures() {
        assert!(requires(Some(OsStr::new("1"))));
        for other in ["", "0", "true", "yes", " 1", "1 ", "01", "2"] {
            assert!(!requires(Some(OsStr::new(other))), "{other:?}");
        }
        assert!(!requires(None));
    }
}
