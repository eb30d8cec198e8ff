//! Issue 5 §5: F2I GGUFs made by our converter run in the real llama.cpp tools (b11434 + our patch)
//! through our plugin: llama-completion, llama-server, llama-perplexity, llama-bench; the plugin is
//! found by name next to the binaries and through `GGML_BACKEND_PATH`; an unpatched llama.cpp refuses
//! the file cleanly; and the F2I model agrees with its dequantized f32 twin run by llama.cpp's own CPU
//! backend (an oracle independent of our kernels).
//!
//! Prerequisites (built/downloaded by `scripts/test`): the patched llama.cpp (`ffi/build-llama.sh`),
//! the registry models (`scripts/fetch-models.sh`). Missing ones → `SKIPPED:` (failure under CI).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fairy2i_tests::*;

struct Env {
    llama: PathBuf,
}

/// Every matrix F2I (`--recipe pure`): these tests measure F2I and the plugin, not a type mixture.
const PURE: &[&str] = &["--recipe", "pure"];

fn env(test: &str, models: &[&str]) -> Option<(Env, Vec<PathBuf>)> {
    let Some(llama) = llama_dir() else {
        skip(
            test,
            "the patched llama.cpp build is absent (run `ffi/build-llama.sh` or scripts/test)",
        );
        return None;
    };
    let mut paths = Vec::new();
    for m in models {
        match model(m) {
            Some(p) => paths.push(p),
            None => {
                skip(
                    test,
                    &format!("model {m} is absent (run scripts/fetch-models.sh)"),
                );
                return None;
            }
        }
    }
    Some((Env { llama }, paths))
}

/// [`env`] plus the evaluation text (`wiki.utf8`).
fn env_with_text(test: &str, models: &[&str]) -> Option<(Env, Vec<PathBuf>, PathBuf)> {
    let (e, m) = env(test, models)?;
    let Some(wiki) = wiki_text() else {
        skip(test, "wiki.utf8 is absent (run scripts/fetch-models.sh)");
        return None;
    };
    Some((e, m, wiki))
}

fn tool(e: &Env, name: &str) -> Command {
    let mut c = Command::new(llama_tool(&e.llama, name));
    c.env("FAIRY2I_LOG", "1");
    c
}

/// The plugin ran F2I matrix products: with `FAIRY2I_LOG=1` it reports every graph it computed, with
/// the count of MUL_MATs per F2I type (`fairy2i: graph: mul_mat 2 (f2i_w2 2), …`). The CPU backend
/// refuses F2I tensors (our patch), so every F2I product of the model is in these lines.
fn assert_plugin_ran(stderr: &str) {
    let ran = stderr
        .lines()
        .filter(|l| l.contains("fairy2i: graph:") && l.contains("(f2i_w"))
        .count();
    assert!(
        ran > 0,
        "the fairy2i plugin computed no F2I matrix product:\n{}",
        &stderr[stderr.len().saturating_sub(6000)..]
    );
}

fn generated_text(stdout: &str, prompt: &str) -> String {
    stdout
        .split_once(prompt)
        .map(|(_, rest)| rest.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn qwen_f2i_w2_generates_text_in_llama_completion() {
    let Some((e, m)) = env("qwen_f2i_w2_generates_text_in_llama_completion", &[QWEN]) else {
        return;
    };
    let _g = heavy();
    let f2i = quantized(&m[0], "f2i_w2", PURE);
    let prompt = "def fibonacci(n):";
    let r = run(
        tool(&e, "llama-completion").arg("-m").arg(&f2i).args([
            "-p",
            prompt,
            "-n",
            "6",
            "-t",
            "2",
            "--temp",
            "0",
            "-no-cnv",
            "-c",
            "256",
            "--no-warmup",
        ]),
        Duration::from_secs(600),
    )
    .ok("llama-completion on an F2I-W2 Qwen");
    assert_plugin_ran(&r.stderr);
    let text = generated_text(&r.stdout, prompt);
    assert!(!text.is_empty(), "no text generated: {:?}", r.stdout);
}

#[test]
fn smollm_f2i_runs_in_llama_completion_and_matches_its_f32_twin() {
    let test = "smollm_f2i_runs_in_llama_completion_and_matches_its_f32_twin";
    let Some((e, m, wiki)) = env_with_text(test, &[SMOLLM]) else {
        return;
    };
    let _g = heavy();
    // Fallback tensors and the embedding in f32 too: the F2I file and its f32 twin then differ only in
    // the F2I tensors, whose products run in our backend in one and in llama.cpp's CPU backend (on
    // the dequantized weights) in the other.
    // W4 with block scales: a usable model (PPL ~58 on this text), so that the int8 path's small
    // deviations are measured on sane distributions rather than on a collapsed model's.
    let f2i = quantized(
        &m[0],
        "f2i_w4",
        &[
            "--recipe",
            "pure",
            "--scale-mode",
            "block",
            "--fallback",
            "f32",
            "--embd-type",
            "f32",
        ],
    );
    let twin = quantized(&f2i, "f32", &[]);

    let prompt = "The capital of France is";
    let r = run(
        tool(&e, "llama-completion").arg("-m").arg(&f2i).args([
            "-p", prompt, "-n", "16", "-t", "2", "--temp", "0", "-no-cnv",
        ]),
        Duration::from_secs(300),
    )
    .ok("llama-completion on F2I SmolLM2");
    assert_plugin_ran(&r.stderr);
    assert!(
        !generated_text(&r.stdout, prompt).is_empty(),
        "no text: {}",
        r.stdout
    );

    // The twin runs on llama.cpp's CPU backend only (no F2I tensor left): save its logits, then compare
    // the F2I model's logits on the same text. Identical weights, so the distributions must agree.
    let base = scratch_dir().join("smollm-twin.kld");
    perplexity(
        &e,
        &twin,
        &wiki,
        [OsStr::new("--kl-divergence-base"), base.as_os_str()],
    );
    // The exact path (f32 activations) must reproduce the CPU's distributions; the default int8
    // path (activations rounded to 8 bits, one step per 64 values; docs/backend.md §2.4) must stay
    // close. Measured: exact KLD 0.000001, same top 100 %; int8 KLD 0.0040, same top 95.7 %.
    for (vars, max_kld, min_top) in [
        (&[("FAIRY2I_EXACT", "1")][..], 1e-4, 99.5),
        (&[][..], 1e-2, 93.0),
    ] {
        let all = perplexity_env(
            &e,
            &f2i,
            &wiki,
            [
                OsStr::new("--kl-divergence-base"),
                base.as_os_str(),
                OsStr::new("--kl-divergence"),
            ],
            vars,
        );
        assert_plugin_ran(&all);
        let mean_kld =
            stat(&all, "Mean    KLD:").expect("no 'Mean KLD' in llama-perplexity output");
        let same_top =
            stat(&all, "Same top p:").expect("no 'Same top p' in llama-perplexity output");
        eprintln!("F2I {vars:?} vs f32 twin: mean KLD {mean_kld}, same top token {same_top} %");
        assert!(
            mean_kld.abs() < max_kld,
            "{vars:?}: mean KLD {mean_kld} too large: backend disagrees with llama.cpp's CPU"
        );
        assert!(
            same_top > min_top,
            "{vars:?}: top token agrees only {same_top} % of the time"
        );
    }
}

/// Parses the first number after `label` in llama-perplexity's KLD report (e.g. `Mean    KLD:   0.001 ± …`).
fn stat(text: &str, label: &str) -> Option<f64> {
    let rest = &text[text.find(label)? + label.len()..];
    rest.split_whitespace()
        .next()?
        .trim_end_matches('%')
        .parse()
        .ok()
}

/// Runs llama-perplexity on `model` over the first 4 × 256 tokens of `text` (the settings every test
/// here uses) with `extra` arguments; returns stdout and stderr together.
fn perplexity<I, S>(e: &Env, model: &Path, text: &Path, extra: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    perplexity_env(e, model, text, extra, &[])
}

/// [`perplexity`] with extra environment variables (e.g. `FAIRY2I_EXACT=1`).
fn perplexity_env<I, S>(
    e: &Env,
    model: &Path,
    text: &Path,
    extra: I,
    vars: &[(&str, &str)],
) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let r = run(
        tool(e, "llama-perplexity")
            .envs(vars.iter().copied())
            .arg("-m")
            .arg(model)
            .arg("-f")
            .arg(text)
            .args(["-c", "256", "--chunks", "4", "-t", "2", "-b", "256"])
            .args(extra),
        Duration::from_secs(900),
    )
    .ok(&format!("llama-perplexity on {}", model.display()));
    format!("{}\n{}", r.stdout, r.stderr)
}

#[test]
fn f2i_perplexity_matches_the_twin_and_w4_close_to_source() {
    let test = "f2i_perplexity_matches_the_twin_and_w4_close_to_source";
    // SmolLM2: its ffn_down matrices are F2I, the rest falls back; the Qwen run is in the quality command.
    let Some((e, m, wiki)) = env_with_text(test, &[SMOLLM]) else {
        return;
    };
    let _g = heavy();
    let ppl = |model: &Path| -> f64 {
        let all = perplexity(&e, model, &wiki, std::iter::empty::<&OsStr>());
        let v = stat(&all, "Final estimate: PPL =").expect("no final PPL estimate");
        eprintln!("PPL {} = {v}", model.display());
        v
    };
    // Paper-exact PTQ (per-tensor scales) is far from the source on this model (measured 11.76 for the
    // source, 1.39e6 for F2I-W4) although the backend itself is exact: the PPL must be the f32
    // twin's. F2I-W4 with joint refinement weighted by an importance matrix
    // of this model (made here by llama-imatrix on a calibration slice of the text that does not
    // overlap the evaluated part) must come close to the source: measured 12.19 (+3.6 %).
    let source = ppl(&m[0]);
    assert!(source > 1.0 && source < 100.0, "source PPL {source}");
    // Paper-exact files: whatever their PPL, the plugin's exact path must give what llama.cpp's CPU
    // gives for the dequantized f32 twin (same weights), and the default int8 path must stay close.
    // (the other tensors in f32, so that the twin differs only in the F2I ones)
    for ty in ["f2i_w2", "f2i_w4"] {
        let f2i = quantized(
            &m[0],
            ty,
            &[
                "--recipe",
                "pure",
                "--fallback",
                "f32",
                "--embd-type",
                "f32",
            ],
        );
        let twin_ppl = ppl(&quantized(&f2i, "f32", &[]));
        let exact = {
            let all = perplexity_env(
                &e,
                &f2i,
                &wiki,
                std::iter::empty::<&OsStr>(),
                &[("FAIRY2I_EXACT", "1")],
            );
            stat(&all, "Final estimate: PPL =").expect("no final PPL estimate")
        };
        let int8 = ppl(&f2i);
        eprintln!("{ty}: twin {twin_ppl}, exact path {exact}, int8 path {int8}");
        assert!(
            (exact / twin_ppl - 1.0).abs() < 1e-3,
            "{ty}: exact-path PPL {exact} differs from the f32 twin's {twin_ppl}"
        );
        // These paper-exact files are collapsed models whose PPL reacts strongly to the int8 rounding
        // (measured, twin / exact path / int8 path: W2 855063 / 855247 / 797199, −6.8 %; W4 1758243 /
        // 1759165 / 1434742, −18.4 %); the exact path is the tight check here, and the usable W4 model
        // of the twin test above bounds the int8 path by KLD (+1.9 % PPL there).
        assert!(
            (int8 / twin_ppl - 1.0).abs() < 0.3,
            "{ty}: int8-path PPL {int8} is not within 30 % of the f32 twin's {twin_ppl}"
        );
    }
    let calib = cache_dir().join("text/wiki-calib-100k.txt");
    let imatrix = scratch_dir().join("smollm.imatrix.gguf");
    run(
        tool(&e, "llama-imatrix")
            .arg("-m")
            .arg(&m[0])
            .arg("-f")
            .arg(&calib)
            .arg("-o")
            .arg(&imatrix)
            .args(["-c", "256", "-b", "256", "--chunks", "20", "-t", "2"]),
        Duration::from_secs(900),
    )
    .ok("llama-imatrix on SmolLM2");
    let imatrix_arg = imatrix.to_string_lossy().into_owned();
    let w4 = ppl(&quantized(
        &m[0],
        "f2i_w4",
        &[
            "--recipe",
            "pure",
            "--scale-mode",
            "joint",
            "--imatrix",
            &imatrix_arg,
        ],
    ));
    assert!(
        w4 <= 1.10 * source,
        "F2I-W4 joint+imatrix PPL {w4} is not within 10 % of the source's {source}"
    );
}

#[test]
fn llama_server_answers_a_completion_on_loopback_and_stops_cleanly() {
    let test = "llama_server_answers_a_completion_on_loopback_and_stops_cleanly";
    let Some((e, m)) = env(test, &[SMOLLM]) else {
        return;
    };
    let _g = heavy();
    let f2i = quantized(&m[0], "f2i_w2", PURE);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let log = tempfile::NamedTempFile::new().expect("tmp");
    let mut child = tool(&e, "llama-server")
        .arg("-m")
        .arg(&f2i)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "-t",
            "2",
            "-c",
            "512",
            "-np",
            "1",
        ])
        .stdout(log.reopen().expect("log"))
        .stderr(log.reopen().expect("log"))
        .spawn()
        .expect("start llama-server");
    let result = std::panic::catch_unwind(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(r) = http(port, "GET", "/health", "") {
                if r.contains("\"ok\"") {
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "llama-server did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        let body = r#"{"prompt": "The capital of France is", "n_predict": 12, "temperature": 0}"#;
        let r = http(port, "POST", "/completion", body).expect("completion request");
        let json = r.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        let v: serde_json::Value =
            serde_json::from_str(json).unwrap_or_else(|e| panic!("bad JSON {e}: {r}"));
        let content = v["content"].as_str().unwrap_or_default();
        assert!(!content.trim().is_empty(), "empty completion: {r}");
        eprintln!("llama-server completion: {content:?}");
    });
    // SIGTERM: the server shuts down cleanly and exits 0.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log_text = std::fs::read_to_string(log.path()).unwrap_or_default();
    if let Err(p) = result {
        eprintln!("--- llama-server log\n{log_text}");
        std::panic::resume_unwind(p);
    }
    assert_plugin_ran(&log_text);
    let status = status.expect("llama-server did not stop within 30 s of SIGTERM");
    assert!(
        status.success(),
        "llama-server exited with {status:?}\n{log_text}"
    );
}

/// A minimal HTTP/1.1 exchange with the server on 127.0.0.1 (no client library needed).
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn llama_bench_runs_f2i_through_the_plugin() {
    let Some((e, m)) = env("llama_bench_runs_f2i_through_the_plugin", &[SMOLLM]) else {
        return;
    };
    let _g = heavy();
    let f2i = quantized(&m[0], "f2i_w2", PURE);
    let r = run(
        tool(&e, "llama-bench")
            .arg("-m")
            .arg(&f2i)
            .args(["-p", "32", "-n", "8", "-r", "1", "-t", "2", "-o", "md"]),
        Duration::from_secs(300),
    )
    .ok("llama-bench");
    assert!(
        r.stdout.contains("pp32") && r.stdout.contains("tg8"),
        "{}",
        r.stdout
    );
    assert_plugin_ran(&r.stderr);
}

/// A copy of the tools without the plugin beside them (hard links, so it is cheap), for the
/// `GGML_BACKEND_PATH` route.
fn bin_without_plugin(e: &Env) -> PathBuf {
    let dst = scratch_dir().join("bin-no-plugin");
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).expect("mkdir");
    for entry in std::fs::read_dir(e.llama.join("bin")).expect("read bin") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name.to_string_lossy().contains("fairy2i") {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).expect("copy");
        }
    }
    dst
}

#[test]
fn plugin_loads_by_name_and_through_ggml_backend_path() {
    let Some((e, m)) = env(
        "plugin_loads_by_name_and_through_ggml_backend_path",
        &[SMOLLM],
    ) else {
        return;
    };
    let _g = heavy();
    let f2i = quantized(&m[0], "f2i_w2", PURE);
    let args = [
        "-n", "4", "-t", "2", "--temp", "0", "-no-cnv", "-p", "Hello",
    ];

    // 1. By name: the plugin sits next to the binaries.
    let r = run(
        tool(&e, "llama-completion").arg("-m").arg(&f2i).args(args),
        Duration::from_secs(300),
    )
    .ok("llama-completion, plugin beside the binaries");
    assert_plugin_ran(&r.stderr);

    // 2. Without the plugin beside them, the F2I file cannot run (no backend has a kernel)...
    let bare = bin_without_plugin(&e);
    let mut c = Command::new(bare.join("llama-completion"));
    c.arg("-m")
        .arg(&f2i)
        .args(args)
        .env_remove("GGML_BACKEND_PATH");
    let r = run(&mut c, Duration::from_secs(300));
    assert_ne!(r.code, Some(0), "an F2I model ran without the plugin?");
    assert!(
        r.code.is_some(),
        "llama-completion crashed (signal) instead of failing cleanly:\n{}",
        r.stderr
    );

    // 3. ...and GGML_BACKEND_PATH brings it in.
    let mut c = Command::new(bare.join("llama-completion"));
    c.arg("-m")
        .arg(&f2i)
        .args(args)
        .env("GGML_BACKEND_PATH", e.llama.join("bin/libggml-fairy2i.so"))
        .env("FAIRY2I_LOG", "1");
    let r = run(&mut c, Duration::from_secs(300)).ok("llama-completion with GGML_BACKEND_PATH");
    assert_plugin_ran(&r.stderr);
}

#[test]
fn unpatched_llama_cpp_rejects_an_f2i_file_cleanly() {
    let test = "unpatched_llama_cpp_rejects_an_f2i_file_cleanly";
    let Some((_e, m)) = env(test, &[SMOLLM]) else {
        return;
    };
    let _g = heavy();
    let out = Command::new("bash")
        .arg(workspace().join("ffi/build-llama.sh"))
        .arg("--unpatched")
        .output()
        .expect("run build-llama.sh --unpatched");
    assert!(
        out.status.success(),
        "build-llama.sh --unpatched failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .trim(),
    );
    let f2i = quantized(&m[0], "f2i_w2", PURE);
    let r = run(
        Command::new(dir.join("bin/llama-simple"))
            .arg("-m")
            .arg(&f2i)
            .args(["-n", "4", "Hello"]),
        Duration::from_secs(120),
    );
    assert!(
        r.code.is_some(),
        "unpatched llama-simple crashed with a signal:\n{}",
        r.stderr
    );
    assert_ne!(r.code, Some(0), "unpatched llama.cpp accepted an F2I file");
    let lower = r.stderr.to_lowercase();
    assert!(
        lower.contains("invalid ggml type") || lower.contains("invalid type"),
        "no clear message about the unknown type:\n{}",
        r.stderr
    );
}

/// The build's `bin/`, or when the build has a valgrind-compatible ggml-cpu (`build-valgrind/`), a
/// scratch directory with `llama-bench` copied, that ggml-cpu and the other modules linked beside it.
fn valgrind_bin_dir(llama: &Path) -> PathBuf {
    let bin = llama.join("bin");
    let cpu = llama.join("build-valgrind/bin/libggml-cpu.so");
    if !cpu.is_file() {
        return bin;
    }
    let dir = scratch_dir().join("valgrind-bin");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the valgrind bin dir");
    std::fs::copy(bin.join("llama-bench"), dir.join("llama-bench")).expect("copy llama-bench");
    for entry in std::fs::read_dir(&bin).expect("read bin/").flatten() {
        let name = entry.file_name();
        let n = name.to_string_lossy();
        if n.starts_with("libggml") && n.contains(".so") && !n.starts_with("libggml-cpu") {
            std::os::unix::fs::symlink(entry.path(), dir.join(&name)).expect("link a module");
        }
    }
    std::os::unix::fs::symlink(&cpu, dir.join("libggml-cpu.so")).expect("link ggml-cpu");
    dir
}

#[test]
fn llama_bench_with_the_plugin_is_clean_under_valgrind() {
    let test = "llama_bench_with_the_plugin_is_clean_under_valgrind";
    let Some((e, m)) = env(test, &[SMOLLM]) else {
        return;
    };
    if Command::new("valgrind").arg("--version").output().is_err() {
        skip(
            test,
            "valgrind is not installed (Debian: apt-get install valgrind)",
        );
        return;
    }
    let _g = heavy();
    let f2i = quantized(&m[0], "f2i_w2", PURE);
    // valgrind emulates AVX2 but not AVX-512: where ffi/build-llama.sh built ggml-cpu for a newer CPU
    // it also built the haswell variant (build-valgrind/); run llama-bench from a directory where
    // ggml_backend_load_all finds that one beside our plugin.
    let bench = valgrind_bin_dir(&e.llama).join("llama-bench");
    // Memory errors anywhere in the process (our plugin, the shim, llama.cpp) make valgrind exit 99.
    // Leaks are not counted: llama.cpp keeps global state until exit.
    let mut c = Command::new("valgrind");
    c.args([
        "--error-exitcode=99",
        "--errors-for-leak-kinds=none",
        "--leak-check=no",
    ])
    .arg(&bench)
    .arg("-m")
    .arg(&f2i)
    .args(["-p", "8", "-n", "2", "-r", "1", "-t", "2"])
    .env("FAIRY2I_LOG", "1");
    let r = run(&mut c, Duration::from_secs(1500));
    assert_eq!(
        r.code,
        Some(0),
        "valgrind reported errors (exit {:?}):\n{}",
        r.code,
        &r.stderr[r.stderr.len().saturating_sub(8000)..]
    );
    assert!(
        r.stderr.contains("ERROR SUMMARY: 0 errors"),
        "{}",
        &r.stderr[r.stderr.len().saturating_sub(3000)..]
    );
    assert_plugin_ran(&r.stderr);
    assert!(
        r.stdout.contains("FAIRY2I"),
        "llama-bench's backend column: {}",
        r.stdout
    );
}
