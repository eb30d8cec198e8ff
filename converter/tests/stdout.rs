//! Issue 15 §2: output into a pipe whose reader has gone (`fairy2i inspect FILE | head`) ends the
//! command quietly with exit 0: no panic, no "Broken pipe" message. Other write errors on stdout
//! are still reported.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Output, Stdio};

use fairy2i_format::gguf::{GgufWriter, Metadata, TensorSpec, Value};
use fairy2i_format::GgmlType;

/// A GGUF whose `inspect` listing is far larger than a pipe's buffer (one line per tensor).
fn big_file(path: &Path) {
    let mut md = Metadata::new();
    md.set("general.architecture", Value::str("llama"));
    let tensors: Vec<TensorSpec> = (0..20_000)
        .map(|i| TensorSpec {
            name: format!("blk.{i}.attn_norm.weight"),
            dims: vec![1],
            ty: GgmlType::F32,
        })
        .collect();
    let mut w = GgufWriter::create(path, &md, tensors.clone()).expect("create");
    for _ in &tensors {
        w.write_tensor(&[0u8; 4]).expect("write");
    }
    w.finish().expect("finish");
}

/// Runs the binary with stdout a pipe whose read end is already closed, so the first write fails
/// with EPIPE (the test does not depend on timing).
fn run_into_closed_pipe(args: &[&std::ffi::OsStr]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    common::bin()
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("the fairy2i binary runs")
}

fn assert_quiet_success(o: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "{what}: exit {:?}, stderr: {stderr}",
        o.status
    );
    assert!(stderr.is_empty(), "{what}: printed to stderr: {stderr}");
}

#[test]
fn inspect_into_a_closed_pipe_exits_quietly() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = tmp.path().join("big.gguf");
    big_file(&path);
    let o = run_into_closed_pipe(&["inspect".as_ref(), path.as_os_str()]);
    assert_quiet_success(&o, "inspect");
}

/// As `fairy2i inspect FILE | head -n 1`: the reader takes one line, then closes while the tool is
/// still writing (the listing is larger than the pipe's buffer).
#[test]
fn inspect_whose_reader_quits_early_exits_quietly() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = tmp.path().join("big.gguf");
    big_file(&path);
    let mut child = common::bin()
        .arg("inspect")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut first = [0u8; 4];
    out.read_exact(&mut first).expect("the listing starts");
    assert_eq!(&first, b"GGUF");
    drop(out);
    let o = child.wait_with_output().expect("wait");
    assert_quiet_success(&o, "inspect | head");
}

#[test]
fn other_printing_commands_into_a_closed_pipe_exit_quietly() {
    let tmp = tempfile::tempdir().expect("temp dir");
    // clap's own help and version printing.
    for args in [&["--help"][..], &["inspect", "--help"], &["--version"]] {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        let o = run_into_closed_pipe(&args);
        assert_quiet_success(&o, &format!("{args:?}"));
    }
    // bench-convert prints its table header before any work.
    let o = run_into_closed_pipe(&["bench-convert".as_ref(), tmp.path().as_os_str()]);
    assert_quiet_success(&o, "bench-convert");
}

/// A real write error (a full device) is still one clear error and a non-zero exit.
#[test]
fn a_full_stdout_is_an_error() {
    let full = Path::new("/dev/full");
    if !full.exists() {
        eprintln!("SKIPPED: /dev/full is absent");
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = tmp.path().join("big.gguf");
    big_file(&path);
    let o = common::bin()
        .arg("inspect")
        .arg(&path)
        .stdout(std::fs::File::create(full).expect("open /dev/full"))
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("fairy2i: standard output:") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
