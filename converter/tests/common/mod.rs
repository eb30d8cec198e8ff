//! Shared helpers of the converter's end-to-end tests: the real binary, the shared fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../../../tests/src/fixtures.rs"]
pub mod fixtures;

/// The `fairy2i` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fairy2i"))
}

/// Runs the binary with `args`.
pub fn run(args: &[&std::ffi::OsStr]) -> Output {
    bin().args(args).output().expect("the fairy2i binary runs")
}

/// The shared fixtures folder (`<shared>/fixtures`, see [`fixtures::shared_dir`]), or `None` after
/// [`fixtures::skip`] (a failure with `FAIRY2I_REQUIRE_FIXTURES=1`).
pub fn fixtures() -> Option<PathBuf> {
    let dir = fixtures::shared_dir().join("fixtures");
    if dir.join("reference").is_dir() {
        return Some(dir);
    }
    fixtures::skip(
        &fixtures::test_name(),
        &format!(
            "the converter fixtures are absent: no {} (set FAIRY2I_SHARED)",
            dir.join("reference").display()
        ),
    );
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
