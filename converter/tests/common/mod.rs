//! Shared helpers of the converter's end-to-end tests: the real binary, the shared fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `fairy2i` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fairy2i"))
}

/// Runs the binary with `args`.
pub fn run(args: &[&std::ffi::OsStr]) -> Output {
    bin().args(args).output().expect("the fairy2i binary runs")
}

/// The shared fixtures folder (`$FAIRY2I_SHARED/fixtures`, else `<workspace>/../shared/fixtures`),
/// or `None` after printing why. Panics instead when `FAIRY2I_REQUIRE_FIXTURES=1`.
pub fn fixtures() -> Option<PathBuf> {
    let shared = match std::env::var_os("FAIRY2I_SHARED") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    let dir = shared.join("fixtures");
    if dir.join("reference").is_dir() {
        return Some(dir);
    }
    let reason = format!("fixtures not found at {}", dir.display());
    if std::env::var_os("FAIRY2I_REQUIRE_FIXTURES").is_some_and(|v| v == "1") {
        panic!("FAIRY2I_REQUIRE_FIXTURES=1 but {reason}");
    }
    eprintln!("SKIPPED: {reason} (set FAIRY2I_SHARED)");
    None
}

/// Copies the folder `src` into `dst_parent`, keeping its name; returns the copy.
pub fn copy_dir(src: &Path, dst_parent: &Path) -> PathBuf {
    let dst = dst_parent.join(src.file_name().expect("a named folder"));
    std::fs::create_dir_all(&dst).expect("create the copy");
    for entry in std::fs::read_dir(src).expect("read the fixture folder") {
        let entry = entry.expect("a folder entry");
        std::fs::copy(entry.path(), dst.join(entry.file_name())).expect("copy a fixture file");
    }
    dst
}

/// The names of the entries of `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
