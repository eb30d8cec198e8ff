//! The one skip rule of the workspace's tests, and where their large inputs live (docs/testing.md).
//!
//! A test whose input is absent (`../shared`, the cache, the llama.cpp build) calls [`skip`]: it
//! prints a loud `SKIPPED: <test>: <reason>` line, or fails when `FAIRY2I_REQUIRE_FIXTURES=1` (as
//! `.ci/run` sets), so CI never passes by skipping.
//!
//! This file uses only `std`. `fairy2i-tests` re-exports it; the tests of the other crates compile it in
//! with `#[path = "…/tests/src/fixtures.rs"] mod fixtures;`, so no crate gains a dependency for it (a
//! dev-dependency of `fairy2i-format` on `fairy2i-tests`, which depends on `fairy2i-format`, would
//! build `fairy2i-format` twice). Every crate of the workspace sits one folder below its root, which is
//! how [`workspace`] finds the root from the including crate's `CARGO_MANIFEST_DIR`.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The variable that turns a skip into a failure.
pub const REQUIRE_VAR: &str = "FAIRY2I_REQUIRE_FIXTURES";

/// Whether a missing input must fail the test: exactly when `FAIRY2I_REQUIRE_FIXTURES=1`.
pub fn required() -> bool {
    requires(std::env::var_os(REQUIRE_VAR).as_deref())
}

/// The rule of [`required`] for a value of `FAIRY2I_REQUIRE_FIXTURES`: `1` and nothing else.
pub fn requires(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| v == "1")
}

/// Reports that `test` cannot run because of `reason`: panics when [`required`], else prints
/// `SKIPPED: <test>: <reason>`.
pub fn skip(test: &str, reason: &str) {
    assert!(!required(), "{test}: {REQUIRE_VAR}=1 but {reason}");
    loud(&format!("SKIPPED: {test}: {reason}"));
}

/// `path` when it exists; otherwise [`skip`]s `test`, naming the path and `how` to get it.
pub fn present(test: &str, path: PathBuf, how: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    skip(test, &format!("{} is absent ({how})", path.display()));
    None
}

/// [`present`] for an input that `scripts/test` does not make (outputs of `scripts/bench` or
/// `scripts/quality`): reported the same way when absent, but never a failure.
pub fn optional(test: &str, path: PathBuf, how: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    loud(&format!(
        "SKIPPED: {test}: {} is absent ({how}; optional: not required even with {REQUIRE_VAR}=1)",
        path.display()
    ));
    None
}

/// The name of the running test: libtest runs each test on a thread named after it.
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string()
}

/// Writes `line` to the process's standard error directly: libtest captures `eprintln!` of a passing
/// test, and a skip must show in the plain `cargo test` output. The leading newline keeps it off a
/// `test … ` line that libtest has begun.
fn loud(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\n*** {line} ***\n");
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The shared folder: `$FAIRY2I_SHARED`, else `../shared` beside the workspace (it may be absent).
pub fn shared_dir() -> PathBuf {
    std::env::var_os("FAIRY2I_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared"))
}

/// The cache: `$FAIRY2I_CACHE`, else `~/.cache/fairy2i` (it may be absent).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("FAIRY2I_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/fairy2i")
        })
}

/// Where the patched llama.cpp build is, or would be: `$FAIRY2I_LLAMA_DIR`, else the last line of
/// `ffi/build-llama.sh --print-dir`. The caller checks for the files it needs in its `bin/`.
pub fn llama_build_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("FAIRY2I_LLAMA_DIR") {
        return Some(PathBuf::from(d));
    }
    let out = Command::new("bash")
        .arg(workspace().join("ffi/build-llama.sh"))
        .arg("--print-dir")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last()?.trim();
    (!last.is_empty()).then(|| PathBuf::from(last))
}
