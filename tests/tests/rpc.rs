//! Issue 18: F2I models through llama.cpp's RPC backend (`ggml-rpc-server` + `llama-completion --rpc`),
//! on loopback only. Two `ggml-rpc-server` processes on free 127.0.0.1 ports, started from the patched
//! build's `bin/` (so `ggml_backend_load_all` finds our plugin beside them), each under `timeout` and
//! stopped by SIGTERM (then SIGKILL) when the test ends, whatever happens; one `llama-completion --rpc`
//! puts every layer on them (`-ngl 99`, an even `--tensor-split`) and must print the same greedy text as
//! the same model in one process.
//!
//! - `rpc_plain_model_across_two_cpu_servers_matches_one_process`: the control (no F2I tensor, servers
//!   on llama.cpp's CPU device). Passes today; if it fails, the harness is wrong, not the plugin.
//! - `rpc_f2i_*`: servers on the FAIRY2I device (`-d FAIRY2I`; without `-d` the server skips ACCEL
//!   devices and serves CPU, which crashes on the first F2I product). An RPC server runs every graph
//!   it receives on its one backend (`ggml-rpc.cpp` `rpc_server::graph_compute`) without asking
//!   `supports_op`, so the FAIRY2I device computes whole graphs there: F2I products itself, every
//!   other node on ggml-cpu (docs/backend.md §3.1, §3.3; findings in docs/rpc-notes.md).
//!
//! Prerequisites as in `llama_tools.rs`, plus `bin/ggml-rpc-server` (built by `ffi/build-llama.sh`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fairy2i_tests::*;

/// Longest a server may live (the `timeout` wrapper kills it even if this test process dies).
const SERVER_LIFETIME_S: u64 = 900;
/// Longest one llama-completion run may take.
const CLIENT_LIMIT: Duration = Duration::from_secs(600);
const PROMPT: &str = "The capital of France is";

/// The patched build, the server binary and the models, or a SKIPPED line.
fn env(test: &str, models: &[&str]) -> Option<(PathBuf, Vec<PathBuf>)> {
    let Some(llama) = llama_dir() else {
        skip(
            test,
            "the patched llama.cpp build is absent (run `ffi/build-llama.sh` or scripts/test)",
        );
        return None;
    };
    if !llama_tool(&llama, "ggml-rpc-server").is_file() {
        skip(
            test,
            "bin/ggml-rpc-server is absent (a build from before RPC was enabled: rerun ffi/build-llama.sh)",
        );
        return None;
    }
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
    Some((llama, paths))
}

/// A free TCP port on 127.0.0.1 (the listener is closed again; the server binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// One `ggml-rpc-server` on 127.0.0.1, stopped when dropped.
struct RpcServer {
    child: Option<Child>,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl RpcServer {
    /// Starts a server for `device` (a ggml device name, e.g. `CPU` or `FAIRY2I`) with `threads`
    /// threads, and waits (at most 60 s) until it accepts connections. A server that exits before
    /// listening (e.g. its free port was taken in between) is retried twice on another port.
    fn start(llama: &Path, device: &str, threads: u32) -> RpcServer {
        for attempt in 0..3 {
            match RpcServer::try_start(llama, device, threads) {
                Ok(s) => return s,
                Err(log) if attempt < 2 => {
                    eprintln!(
                        "ggml-rpc-server -d {device} exited before listening; retrying\n{log}"
                    )
                }
                Err(log) => panic!("ggml-rpc-server -d {device} exited before listening:\n{log}"),
            }
        }
        unreachable!()
    }

    fn try_start(llama: &Path, device: &str, threads: u32) -> Result<RpcServer, String> {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("temp file");
        // `timeout` bounds the server's life even if this process is killed before Drop runs; it
        // passes the SIGTERM of `stop` on to the server.
        let child = Command::new("timeout")
            .args(["-k", "5", &SERVER_LIFETIME_S.to_string()])
            .arg(llama_tool(llama, "ggml-rpc-server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .args(["-d", device, "-t", &threads.to_string()])
            .env("FAIRY2I_LOG", "1")
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("log"))
            .stderr(log.reopen().expect("log"))
            .spawn()
            .expect("start ggml-rpc-server (under timeout)");
        let mut server = RpcServer {
            child: Some(child),
            port,
            log,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // A probe connection is accepted and closed again by the server (it then waits for
            // the next client), so it does not disturb the run.
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return Ok(server);
            }
            let exited = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(format!("({status})\n{}", server.log_text()));
            }
            assert!(
                Instant::now() < deadline,
                "ggml-rpc-server -d {device} did not listen on 127.0.0.1:{port} within 60 s:\n{}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// SIGTERM (the server has no handler: it ends at once; `timeout` forwards the signal), at most
    /// 10 s to exit, then SIGKILL. Returns how it ended (None: it had to be killed).
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The text llama-completion generated after the prompt.
fn generated(stdout: &str) -> String {
    stdout
        .split_once(PROMPT)
        .map(|(_, rest)| rest.trim().to_string())
        .unwrap_or_default()
}

/// The arguments both runs share: greedy, fixed context, no warm-up; flash attention off and no
/// CPU repacking in the local run, so both runs use the same ggml-cpu kernels (an RPC server keeps
/// weights in its device's own buffer type, never in ggml-cpu's repacked layouts).
fn common_args(model: &Path, n_predict: u32) -> Vec<String> {
    [
        "-m",
        &model.to_string_lossy(),
        "-p",
        PROMPT,
        "-n",
        &n_predict.to_string(),
        "--temp",
        "0",
        "-no-cnv",
        "-c",
        "256",
        "--no-warmup",
        "-fa",
        "off",
        "-t",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Lines in which the plugin reports F2I products it computed (`FAIRY2I_LOG=1`).
fn f2i_product_lines(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("fairy2i: graph:") && l.contains("(f2i_w"))
        .count()
}

/// Runs `model` once in one process and once split over two RPC servers on `device`, and asserts
/// the same greedy text; for an F2I model also that both servers ran F2I products and the client
/// none (every layer is remote).
fn rpc_matches_one_process(test: &str, llama: &Path, model: &Path, device: &str, n_predict: u32) {
    let f2i = device == "FAIRY2I";
    let local = run(
        Command::new(llama_tool(llama, "llama-completion"))
            .args(common_args(model, n_predict))
            .args(["-ngl", "0", "--no-repack"])
            .env("FAIRY2I_LOG", "1"),
        CLIENT_LIMIT,
    )
    .ok(&format!("{test}: llama-completion in one process"));
    let expected = generated(&local.stdout);
    assert!(
        !expected.is_empty(),
        "{test}: no text in one process:\n{}",
        local.stdout
    );

    let mut a = RpcServer::start(llama, device, 1);
    let mut b = RpcServer::start(llama, device, 1);
    let endpoints = format!("{},{}", a.endpoint(), b.endpoint());
    // -fit off and an even split: every layer on the servers, half each, whatever memory they
    // report (the FAIRY2I device reports 0/0, which --fit reads as "do not use this device").
    let remote = run(
        Command::new(llama_tool(llama, "llama-completion"))
            .args(common_args(model, n_predict))
            .args([
                "--rpc", &endpoints, "-ngl", "99", "-ts", "1,1", "-fit", "off",
            ])
            .env("FAIRY2I_LOG", "1"),
        CLIENT_LIMIT,
    );
    let (status_a, status_b) = (a.stop(), b.stop());
    let (log_a, log_b) = (a.log_text(), b.log_text());
    let explain = || {
        format!(
            "--- client stderr (tail)\n{}\n--- server A ({status_a:?})\n{}\n--- server B ({status_b:?})\n{}",
            &remote.stderr[remote.stderr.len().saturating_sub(6000)..],
            &log_a[log_a.len().saturating_sub(4000)..],
            &log_b[log_b.len().saturating_sub(4000)..],
        )
    };
    assert_eq!(
        remote.code,
        Some(0),
        "{test}: llama-completion --rpc failed\n{}",
        explain()
    );
    let got = generated(&remote.stdout);
    eprintln!("{test}: one process: {expected:?}\n{test}: over RPC:     {got:?}");
    assert_eq!(
        got,
        expected,
        "{test}: the RPC run generated other text\n{}",
        explain()
    );
    if f2i {
        for (name, log) in [("A", &log_a), ("B", &log_b)] {
            assert!(
                f2i_product_lines(log) > 0,
                "{test}: server {name} ran no F2I product (the layer split did not reach it)\n{}",
                explain()
            );
        }
        assert_eq!(
            f2i_product_lines(&remote.stderr),
            0,
            "{test}: the client computed F2I products itself although every layer is remote"
        );
    }
}

#[test]
fn rpc_plain_model_across_two_cpu_servers_matches_one_process() {
    let test = "rpc_plain_model_across_two_cpu_servers_matches_one_process";
    let Some((llama, m)) = env(test, &[SMOLLM]) else {
        return;
    };
    let _g = heavy();
    rpc_matches_one_process(test, &llama, &m[0], "CPU", 16);
}

#[test]
fn rpc_f2i_smollm_across_two_fairy2i_servers_matches_one_process() {
    let test = "rpc_f2i_smollm_across_two_fairy2i_servers_matches_one_process";
    let Some((llama, m)) = env(test, &[SMOLLM]) else {
        return;
    };
    let _g = heavy();
    // ffn_down (K = 1536) is F2I; the K = 576 matrices fall back to q8_0 and run on the servers'
    // ggml-cpu through the FAIRY2I device.
    let f2i = quantized(&m[0], "f2i_w4", &["--scale-mode", "block"]);
    rpc_matches_one_process(test, &llama, &f2i, "FAIRY2I", 16);
}

#[test]
fn rpc_f2i_qwen_across_two_fairy2i_servers_matches_one_process() {
    let test = "rpc_f2i_qwen_across_two_fairy2i_servers_matches_one_process";
    let Some((llama, m)) = env(test, &[QWEN]) else {
        return;
    };
    let _g = heavy();
    // Every matrix is F2I; ffn_down has K = 8960, not a multiple of 512, so the client also sends
    // RPC_CMD_INIT_TENSOR and RPC_CMD_GET_ALLOC_SIZE for an F2I tensor (ggml-rpc.cpp, the padding
    // path meant for CUDA servers). W4 with block scales: coherent text, so that a divergence shows.
    let f2i = quantized(&m[0], "f2i_w4", &["--scale-mode", "block"]);
    rpc_matches_one_process(test, &llama, &f2i, "FAIRY2I", 8);
}
