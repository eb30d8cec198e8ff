//! Compiles the C shim (`ffi/shim/*.c`, docs/abi.md) against the patched ggml headers of the pinned
//! llama.cpp tree.
//!
//! The tree is `$FAIRY2I_LLAMA_SRC` when set, else the cached patched source of `ffi/build-llama.sh`
//! (`--print-dir` + `/src` when it is already extracted, else `--source-only`, which extracts and patches).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .parent()
        .expect("ggml-backend lives inside the workspace")
        .to_path_buf();
    let shim_dir = workspace.join("ffi/shim");
    let our_include = workspace.join("ffi/include");
    let script = workspace.join("ffi/build-llama.sh");

    println!("cargo:rerun-if-env-changed=FAIRY2I_LLAMA_SRC");
    println!("cargo:rerun-if-env-changed=FAIRY2I_CACHE");
    println!("cargo:rerun-if-changed={}", shim_dir.display());
    println!("cargo:rerun-if-changed={}", our_include.display());
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("ffi/patches").display()
    );

    let src = match std::env::var_os("FAIRY2I_LLAMA_SRC") {
        Some(dir) => PathBuf::from(dir),
        None => locate_source(&script),
    };
    let include = src.join("ggml/include");
    let internal = src.join("ggml/src");
    for (dir, file) in [
        (&include, "ggml.h"),
        (&internal, "ggml-backend-impl.h"),
        (&internal, "ggml-common.h"),
    ] {
        if !dir.join(file).is_file() {
            fail(&format!("{} has no {file}: FAIRY2I_LLAMA_SRC must be the root of the patched llama.cpp tree", dir.display()));
        }
    }
    println!(
        "cargo:rerun-if-changed={}",
        include.join("ggml.h").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        internal.join("ggml-backend-impl.h").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        internal.join("ggml-common.h").display()
    );

    let mut sources: Vec<PathBuf> = std::fs::read_dir(&shim_dir)
        .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", shim_dir.display())))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "c"))
        .collect();
    sources.sort();
    if sources.is_empty() {
        fail(&format!("no C files in {}", shim_dir.display()));
    }

    let mut build = cc::Build::new();
    build
        .files(&sources)
        .include(&our_include)
        .include(&include)
        .include(&internal)
        .std("c11")
        .warnings(true)
        .extra_warnings(true)
        .flag_if_supported("-Werror=implicit-function-declaration")
        .flag_if_supported("-Werror=incompatible-pointer-types")
        .flag_if_supported("-fvisibility=hidden")
        // ggml-impl.h (for struct ggml_cgraph) defines static helpers the shim does not use
        .flag_if_supported("-Wno-unused-function");
    build.compile("ggml_fairy2i_shim");
}

/// Finds the patched tree through `ffi/build-llama.sh`. `--print-dir` never blocks, so an already
/// extracted tree is used without taking the script's lock (a llama.cpp build may hold it for minutes).
fn locate_source(script: &Path) -> PathBuf {
    println!("cargo:rerun-if-changed={}", script.display());
    if !script.is_file() {
        fail(&format!(
            "{} not found; set FAIRY2I_LLAMA_SRC to the patched llama.cpp tree",
            script.display()
        ));
    }
    if let Some(dir) = run_script(script, "--print-dir") {
        let src = dir.join("src");
        if src.join(".fairy2i-src-ok").is_file() {
            return src;
        }
    }
    match run_script(script, "--source-only") {
        Some(src) => src,
        None => fail(&format!(
            "`bash {} --source-only` failed (see its stderr above); set FAIRY2I_LLAMA_SRC to the patched llama.cpp tree",
            script.display()
        )),
    }
}

/// Runs the script with one flag; the last stdout line is a directory.
fn run_script(script: &Path, flag: &str) -> Option<PathBuf> {
    let out = Command::new("bash").arg(script).arg(flag).output().ok()?;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())?
        .trim()
        .to_string();
    Some(PathBuf::from(last))
}

fn fail(msg: &str) -> ! {
    eprintln!("error: fairy2i-ggml-backend: {msg}");
    println!("cargo:warning=fairy2i-ggml-backend: {msg}");
    std::process::exit(1);
}
