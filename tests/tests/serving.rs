//! Issue 15 item 2: serving an F2I model with the real llama.cpp tools, the way people run it.
//!
//! - [`server_answers_16_concurrent_requests_as_it_answers_each_alone`]: `llama-server -np 4`,
//!   16 requests at once, against the same server with each prompt sent alone (bit-equal text and
//!   log-probabilities); a clean stop on SIGTERM.
//! - [`server_embeddings_agree_with_the_f32_twin`]: `llama-server --embeddings`, against the f32
//!   twin on llama.cpp's CPU backend (cosine).
//! - [`llama_bench_prompt_processing_with_batch_512_and_2048`]: `llama-bench -p 512 -n 0` with
//!   `-b 512` and `-b 2048`: both rows, positive t/s.
//! - [`server_memory_stops_growing_over_300_requests`]: `llama-server -np 4`, 300 short requests,
//!   against its own resident memory earlier in the run.
//!
//! `llama-perplexity` with `-b`/`-ub` layouts is in `batching.rs`. The model is SmolLM2-135M F2I-W4
//! with block scales (what `fairy2i quantize --scale-mode block` makes: F2I `ffn_down`, the other
//! matrices q8_0), small enough for a 2-core machine. Every server listens on 127.0.0.1 only, is
//! started by a [`Server`] guard that kills it when dropped (failures included), and every request
//! and wait has a time limit. `FAIRY2I_LOG=1` makes the plugin report each graph it computed; every
//! test asserts that F2I products ran there.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use fairy2i_tests::*;

/// The patched llama.cpp and SmolLM2, or `None` after reporting why the test cannot run.
fn prerequisites(test: &str) -> Option<(PathBuf, PathBuf)> {
    let Some(llama) = llama_dir() else {
        skip(
            test,
            "the patched llama.cpp build is absent (run `ffi/build-llama.sh` or scripts/test)",
        );
        return None;
    };
    let Some(src) = model(SMOLLM) else {
        skip(
            test,
            &format!("model {SMOLLM} is absent (run scripts/fetch-models.sh)"),
        );
        return None;
    };
    Some((llama, src))
}

/// SmolLM2 F2I-W4, block scales, default fallback (q8_0) and embedding (q8_0) types.
fn f2i_model(src: &Path) -> PathBuf {
    quantized(
        src,
        "f2i_w4",
        &["--recipe", "pure", "--scale-mode", "block"],
    )
}

/// The plugin ran F2I products: with `FAIRY2I_LOG=1` it prints one line per graph, with the count
/// of products per F2I type (`fairy2i: graph: mul_mat 30 (f2i_w4 30), …`).
fn assert_plugin_ran(log: &str, what: &str) {
    let ran = log
        .lines()
        .filter(|l| l.contains("fairy2i: graph:") && l.contains("(f2i_w"))
        .count();
    assert!(
        ran > 0,
        "{what}: the fairy2i plugin computed no F2I matrix product:\n{}",
        tail(log, 6000)
    );
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Panics when the test's overall time limit has passed.
fn within(deadline: Instant, what: &str) {
    assert!(
        Instant::now() < deadline,
        "the test ran out of its time limit before {what}"
    );
}

// ---------------------------------------------------------------- HTTP on loopback

/// A finished HTTP exchange.
struct Response {
    status: u16,
    body: String,
}

impl Response {
    /// The body as JSON, panicking with the whole response unless the status is 200.
    fn json(&self, what: &str) -> Value {
        assert_eq!(
            self.status,
            200,
            "{what}: HTTP {}: {}",
            self.status,
            tail(&self.body, 2000)
        );
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{what}: bad JSON ({e}): {}", tail(&self.body, 2000)))
    }
}

/// One HTTP/1.1 request to 127.0.0.1 (std only, `Connection: close`), every step within `limit`.
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    limit: Duration,
) -> std::io::Result<Response> {
    let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(limit))?;
    s.set_write_timeout(Some(limit))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers".into()))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut data = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad(format!("no status in {head:?}")))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        data = dechunk(&data).ok_or_else(|| bad("bad chunked body".into()))?;
    }
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&data).into_owned(),
    })
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

// ---------------------------------------------------------------- the server guard

/// A `llama-server` on 127.0.0.1 with `FAIRY2I_LOG=1`, its stdout and stderr in a temporary file.
/// Dropping it kills the process (SIGKILL) if it still runs, and prints the log's tail when the
/// test is failing; [`Server::stop`] is the clean way out.
struct Server {
    child: Option<Child>,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Server {
    /// Starts the server and waits (at most `limit`) until `/health` answers `ok`.
    fn start(llama: &Path, model: &Path, args: &[&str], limit: Duration) -> Server {
        Server::start_with_env(llama, model, args, &[], limit)
    }

    /// [`Server::start`] with extra environment variables (e.g. `FAIRY2I_EXACT=1`). A port taken
    /// between [`free_port`] and the server's bind is retried with another, twice at most.
    fn start_with_env(
        llama: &Path,
        model: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        limit: Duration,
    ) -> Server {
        let mut attempt = 1;
        loop {
            match Server::try_start(llama, model, args, env, limit) {
                Ok(server) => return server,
                Err(log) if attempt < 3 && log.contains("couldn't bind") => attempt += 1,
                Err(log) => panic!(
                    "llama-server exited before it was ready:\n{}",
                    tail(&log, 6000)
                ),
            }
        }
    }

    /// Starts the server on a free port; `Err(log)` if it exits before it is ready.
    fn try_start(
        llama: &Path,
        model: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        limit: Duration,
    ) -> Result<Server, String> {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("temporary log file");
        let child = Command::new(llama_tool(llama, "llama-server"))
            .env("FAIRY2I_LOG", "1")
            .envs(env.iter().copied())
            .arg("-m")
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("log file"))
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("start llama-server");
        let mut server = Server {
            child: Some(child),
            port,
            log,
        };
        let deadline = Instant::now() + limit;
        loop {
            let exited = server
                .child_mut()
                .try_wait()
                .expect("wait for llama-server")
                .is_some();
            if exited {
                server.child = None;
                return Err(server.log_text());
            }
            if let Ok(r) = http(port, "GET", "/health", "", Duration::from_secs(10)) {
                if r.status == 200 && r.body.contains("\"ok\"") {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "llama-server was not ready within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        // the server that answered is ours: it serves our model
        let props = http(port, "GET", "/props", "", Duration::from_secs(10))
            .expect("GET /props")
            .json("GET /props");
        assert_eq!(
            props["model_path"].as_str(),
            model.to_str(),
            "the server on port {port} serves another model"
        );
        Ok(server)
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("the server is running")
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// POSTs a JSON body; `Err` for a transport failure (timeout, reset).
    fn post(&self, path: &str, body: &Value, limit: Duration) -> std::io::Result<Response> {
        http(self.port, "POST", path, &body.to_string(), limit)
    }

    /// SIGTERM, then waits at most `limit` for the exit. Returns the exit status and how long the
    /// stop took; panics if the process had to be killed or a process still listens on its port.
    fn stop(mut self, limit: Duration) -> (ExitStatus, Duration) {
        let pid = self.pid();
        let t0 = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "could not send SIGTERM to llama-server {pid}");
        let status = loop {
            if let Some(s) = self.child_mut().try_wait().expect("wait for llama-server") {
                break s;
            }
            assert!(
                t0.elapsed() < limit,
                "llama-server did not stop within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let took = t0.elapsed();
        self.child = None;
        let left = processes_with_arg(&format!("{}", self.port), "--port");
        assert!(
            left.is_empty(),
            "processes left on port {} after the stop: {left:?}",
            self.port
        );
        (status, took)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- llama-server log (tail)\n{}",
                tail(&self.log_text(), 6000)
            );
        }
    }
}

/// Pids of live processes whose command line has `flag` followed by `value`.
fn processes_with_arg(value: &str, flag: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
            args.windows(2)
                .any(|w| w[0] == flag.as_bytes() && w[1] == value.as_bytes())
        })
        .collect()
}

/// A line of `/proc/PID/status` in KiB (`VmRSS`, `RssAnon`).
fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(&format!("{key}:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------- 1. concurrency

const PROMPTS: [&str; 16] = [
    "The capital of France is",
    "Once upon a time, there was a",
    "The best way to learn programming is",
    "Water boils at a temperature of",
    "My favourite fruit is",
    "The first man on the moon was",
    "In the year 2050, cars will",
    "A good breakfast includes",
    "The largest ocean on Earth is",
    "To make a cup of tea, you",
    "The sun rises in the",
    "Dogs are known for their",
    "The Python programming language was created by",
    "Mount Everest is located in",
    "The color of the sky is",
    "A triangle has",
];

/// One greedy completion, with the top-2 log-probabilities of every generated token if `probs`.
/// The prompt cache is off, so a repeated prompt is evaluated again (in whatever batch the server
/// forms).
fn completion(
    server: &Server,
    prompt: &str,
    n_predict: u32,
    probs: bool,
) -> std::io::Result<Value> {
    let body = json!({
        "prompt": prompt,
        "n_predict": n_predict,
        "temperature": 0,
        "cache_prompt": false,
        "n_probs": if probs { 2 } else { 0 },
    });
    let r = server.post("/completion", &body, Duration::from_secs(120))?;
    Ok(r.json(&format!("completion of {prompt:?}")))
}

/// Where two answers' per-token log-probabilities first differ, in words; `None` if they are equal.
fn first_difference(batched: &Value, alone: &Value) -> Option<String> {
    let key = "completion_probabilities";
    if batched[key] == alone[key] {
        return None;
    }
    let (Some(b), Some(a)) = (batched[key].as_array(), alone[key].as_array()) else {
        return Some(format!(
            "the log-probabilities are {} (alone: {})",
            batched[key], alone[key]
        ));
    };
    let Some((i, (x, y))) = b.iter().zip(a).enumerate().find(|(_, (x, y))| x != y) else {
        return Some(format!(
            "{} tokens have log-probabilities (alone: {})",
            b.len(),
            a.len()
        ));
    };
    Some(format!(
        "generated token {i} has the top log-probabilities {} (alone: {})",
        x["top_logprobs"], y["top_logprobs"]
    ))
}

fn content(v: &Value) -> &str {
    v["content"].as_str().unwrap_or_default()
}

/// `llama-server -np 4` answers 16 requests sent at once exactly as it answers each alone: the same
/// text and the same top-2 log-probabilities at every generated token, bit for bit.
///
/// Why bit-equal is the right bound: llama.cpp's CPU products with quantized weights (q8_0 here,
/// Q4_1 in the source model) quantize each activation column on its own and sum in a fixed order,
/// and so do ours (each output is one `pair_dot` of one column, whatever the batch). Served the
/// same way (default server flags, 16 prompts × 16 tokens), the Q4_1 source and this model both
/// gave identical log-probabilities alone and batched. The prompts are short so that no
/// micro-batch reaches 64 tokens (4 slots × at most 11 prompt tokens): from there llama.cpp's CPU
/// flash attention switches to its tiled kernel (`GGML_FA_TILE_Q`), which rounds differently.
///
/// A model whose fallback matrices are f32 (`--fallback f32 --embd-type f32`) does not, and this
/// test fails on it: llama.cpp's f32 products round differently in a batch (that model's f32 twin,
/// all on llama.cpp's CPU backend, moved log-probabilities by up to 7e-3 between alone and batched,
/// 1e-5 with an f32 KV cache and no flash attention, though its greedy text did not change), and
/// the int8 activation path (docs/backend.md §2.4) turns those small differences into flipped
/// roundings: log-probability changes up to 0.45 and different greedy text in 5 to 7 of the 16
/// answers. That is the f32 fallback's batch dependence amplified, not batching in the plugin: with
/// `FAIRY2I_EXACT=1` (f32 activations) that model matched its alone answers in all 16, like its
/// twin, and the int8 kernels give each column the same bits alone and among 2, 4 or 16 columns
/// (checked on that model's `blk.0.ffn_down`).
///
/// Then SIGTERM stops the server cleanly: exit status 0 within 30 s, nothing left on its port.
#[test]
fn server_answers_16_concurrent_requests_as_it_answers_each_alone() {
    let test = "server_answers_16_concurrent_requests_as_it_answers_each_alone";
    let Some((llama, src)) = prerequisites(test) else {
        return;
    };
    let _g = heavy();
    let deadline = Instant::now() + Duration::from_secs(600);
    let f2i = f2i_model(&src);
    let server = Server::start(
        &llama,
        &f2i,
        &["-t", "2", "-c", "2048", "-np", "4"],
        Duration::from_secs(180),
    );

    let t0 = Instant::now();
    let alone: Vec<Value> = PROMPTS
        .iter()
        .map(|p| {
            within(deadline, "the requests sent alone");
            completion(&server, p, 16, true).unwrap_or_else(|e| panic!("request {p:?} alone: {e}"))
        })
        .collect();
    let alone_time = t0.elapsed();
    for (p, v) in PROMPTS.iter().zip(&alone) {
        assert!(!content(v).trim().is_empty(), "empty answer to {p:?}: {v}");
    }

    // all 16 at once: every thread waits at the barrier, then sends
    within(deadline, "the concurrent requests");
    let t0 = Instant::now();
    let barrier = std::sync::Barrier::new(PROMPTS.len());
    let together: Vec<std::io::Result<Value>> = std::thread::scope(|s| {
        let handles: Vec<_> = PROMPTS
            .iter()
            .map(|p| {
                let (server, barrier) = (&server, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    completion(server, p, 16, true)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let together_time = t0.elapsed();
    eprintln!("16 requests alone: {alone_time:?}; all 16 at once: {together_time:?}");

    let mut slots = Vec::new();
    for ((p, a), t) in PROMPTS.iter().zip(&alone).zip(together) {
        let t = t.unwrap_or_else(|e| panic!("request {p:?} sent with 15 others: {e}"));
        assert_eq!(
            content(&t),
            content(a),
            "{p:?}: the answer in a batch differs from the answer alone"
        );
        if let Some(diff) = first_difference(&t, a) {
            panic!("{p:?}: same text, but in a batch {diff}");
        }
        assert!(
            a["completion_probabilities"]
                .as_array()
                .is_some_and(|v| !v.is_empty()),
            "{p:?}: no log-probabilities in the answer: {a}"
        );
        if let Some(id) = t["id_slot"].as_i64() {
            if !slots.contains(&id) {
                slots.push(id);
            }
        }
    }
    // the 16 requests were spread over the slots, i.e. decoded in shared batches
    assert_eq!(
        slots.len(),
        4,
        "slots used by the concurrent requests: {slots:?}"
    );

    let log = server.log_text();
    assert_plugin_ran(&log, "llama-server -np 4");
    within(deadline, "the stop");
    let (status, took) = server.stop(Duration::from_secs(30));
    eprintln!("llama-server stopped on SIGTERM in {took:?} with {status}");
    assert!(
        status.success(),
        "llama-server exited with {status} after SIGTERM"
    );
}

// ---------------------------------------------------------------- 2. embeddings

/// `general.architecture`'s `embedding_length` from a GGUF's metadata.
fn embedding_length(path: &Path) -> usize {
    let file = fairy2i_format::gguf::MappedGguf::open(path).expect("open GGUF");
    let g = file.parse().expect("parse GGUF");
    let arch = g
        .metadata
        .get("general.architecture")
        .and_then(|v| v.as_str())
        .expect("general.architecture");
    let n = g
        .metadata
        .get(&format!("{arch}.embedding_length"))
        .and_then(|v| v.as_u64())
        .expect("embedding_length");
    usize::try_from(n).expect("embedding length fits usize")
}

const EMBED_TEXTS: [&str; 4] = [
    "The quick brown fox jumps over the lazy dog.",
    "def add(a, b):\n    return a + b",
    "Paris is the capital and largest city of France.",
    "Photosynthesis converts light energy into chemical energy in plants.",
];

/// The mean-pooled embedding of each text from a `--embeddings` server (`/v1/embeddings`).
fn embeddings(llama: &Path, model: &Path, env: &[(&str, &str)], plugin: bool) -> Vec<Vec<f64>> {
    let args = "--embeddings --pooling mean -t 2 -c 512 -np 1";
    let args: Vec<&str> = args.split(' ').collect();
    let server = Server::start_with_env(llama, model, &args, env, Duration::from_secs(180));
    let out = EMBED_TEXTS
        .iter()
        .map(|text| {
            let r = server
                .post(
                    "/v1/embeddings",
                    &json!({ "input": text }),
                    Duration::from_secs(120),
                )
                .unwrap_or_else(|e| panic!("embedding of {text:?}: {e}"));
            let v = r.json(&format!("embedding of {text:?}"));
            v["data"][0]["embedding"]
                .as_array()
                .unwrap_or_else(|| panic!("no data[0].embedding in {v}"))
                .iter()
                .map(|x| x.as_f64().expect("embedding entries are numbers"))
                .collect()
        })
        .collect();
    let log = server.log_text();
    let f2i_lines = log
        .lines()
        .filter(|l| l.contains("fairy2i: graph:") && l.contains("(f2i_w"))
        .count();
    if plugin {
        assert_plugin_ran(&log, "llama-server --embeddings");
    } else {
        // the oracle must not run through our code
        assert_eq!(f2i_lines, 0, "the f32 twin ran F2I products");
    }
    let (status, _) = server.stop(Duration::from_secs(30));
    assert!(
        status.success(),
        "llama-server --embeddings exited with {status}"
    );
    out
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// `llama-server --embeddings` serves F2I models: `/v1/embeddings` returns one vector of the
/// model's embedding size per text, and it points where the f32 twin's does (same weights,
/// dequantized, run by llama.cpp's CPU backend; the fallback matrices and the token embedding are
/// f32 in both files, so they differ only in the F2I products).
///
/// Bounds, from the measured values (mean pooling, L2-normalised, 4 texts):
/// - default int8 path: cosine ≥ 0.995. Measured 0.99893 … 0.99967, the int8 activations'
///   rounding (docs/backend.md §2.4); different texts are 0.46 … 0.67 apart on the twin, so a
///   wrong or garbled vector cannot pass.
/// - `FAIRY2I_EXACT=1` (f32 activations): 1 − cosine ≤ 1e-5. Measured 0.8e-7 … 2.6e-7, f32
///   summation order; a wrong weight or a mixed-up column moves it by orders of magnitude more.
#[test]
fn server_embeddings_agree_with_the_f32_twin() {
    let test = "server_embeddings_agree_with_the_f32_twin";
    let Some((llama, src)) = prerequisites(test) else {
        return;
    };
    let _g = heavy();
    let deadline = Instant::now() + Duration::from_secs(600);
    let f2i = quantized(
        &src,
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
    let n_embd = embedding_length(&f2i);

    let int8 = embeddings(&llama, &f2i, &[], true);
    within(deadline, "the exact path's embeddings");
    let exact = embeddings(&llama, &f2i, &[("FAIRY2I_EXACT", "1")], true);
    within(deadline, "the twin's embeddings");
    let twin = embeddings(&llama, &twin, &[], false);
    for (i, text) in EMBED_TEXTS.iter().enumerate() {
        for (v, what) in [
            (&int8[i], "F2I"),
            (&exact[i], "F2I exact"),
            (&twin[i], "twin"),
        ] {
            assert_eq!(v.len(), n_embd, "{text:?}: {what} embedding size");
            assert!(
                v.iter().all(|x| x.is_finite()) && v.iter().any(|&x| x != 0.0),
                "{text:?}: {what} embedding is zero or not finite"
            );
        }
        let (c8, ce) = (cosine(&int8[i], &twin[i]), cosine(&exact[i], &twin[i]));
        eprintln!(
            "{text:?}: cosine with the f32 twin: int8 path {c8:.6}, exact path 1 - {:.2e}",
            1.0 - ce
        );
        assert!(
            c8 >= 0.995,
            "{text:?}: the F2I embedding is not where the twin's is (cosine {c8})"
        );
        assert!(
            1.0 - ce <= 1e-5,
            "{text:?}: the exact path's embedding differs from the twin's (1 - cosine {})",
            1.0 - ce
        );
    }
    // the reference separates texts far more than the bound allows an F2I vector to stray
    for i in 0..twin.len() {
        for j in i + 1..twin.len() {
            let c = cosine(&twin[i], &twin[j]);
            assert!(c < 0.9, "twin: texts {i} and {j} have cosine {c}");
        }
    }
}

// ---------------------------------------------------------------- 3. llama-bench

/// `llama-bench -p 512 -n 0` with a logical batch of 512 and of 2048 runs the F2I model through the
/// plugin and reports a positive prompt-processing speed for both.
#[test]
fn llama_bench_prompt_processing_with_batch_512_and_2048() {
    let test = "llama_bench_prompt_processing_with_batch_512_and_2048";
    let Some((llama, src)) = prerequisites(test) else {
        return;
    };
    let _g = heavy();
    let f2i = f2i_model(&src);
    let r = run(
        Command::new(llama_tool(&llama, "llama-bench"))
            .env("FAIRY2I_LOG", "1")
            .arg("-m")
            .arg(&f2i)
            .args([
                "-p", "512", "-n", "0", "-b", "512,2048", "-r", "1", "-t", "2", "-o", "json",
            ]),
        Duration::from_secs(600),
    )
    .ok("llama-bench -p 512 -n 0 -b 512,2048");
    assert_plugin_ran(&r.stderr, "llama-bench");
    let rows: Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("llama-bench -o json printed no JSON ({e}): {}", r.stdout));
    let rows = rows.as_array().expect("llama-bench JSON is an array");
    for batch in [512, 2048] {
        let row = rows
            .iter()
            .find(|row| row["n_batch"].as_u64() == Some(batch))
            .unwrap_or_else(|| panic!("no -b {batch} row in {rows:?}"));
        assert_eq!(row["n_prompt"].as_u64(), Some(512), "{row}");
        assert_eq!(row["n_gen"].as_u64(), Some(0), "{row}");
        let ts = row["avg_ts"].as_f64().unwrap_or(f64::NAN);
        eprintln!("llama-bench pp512 -b {batch}: {ts:.1} t/s");
        assert!(ts.is_finite() && ts > 0.0, "-b {batch}: speed {ts}: {row}");
    }
}

// ---------------------------------------------------------------- 4. soak

/// 300 short requests (distinct prompts, 4 tokens each, 4 at a time) to one server: every one is
/// answered, and the server's resident memory (`VmRSS`, sampled every 20 requests) stops growing:
/// the largest sample of the last third is at most 512 KiB above the largest of the middle third.
/// Measured on a loaded machine: 272 868 KiB after the first 20 requests, 272 980 KiB at most in
/// the middle third, 272 992 KiB in the last (+12 KiB); idle: +8 KiB. With 100 requests a third, a
/// leak of 5 KiB or more per request fails. The server's host-memory prompt cache is off
/// (`--cache-ram 0`): it keeps distinct prompts by design and would grow up to its 8 GiB default.
///
/// Duration with 2 threads on 2 cores: 24 s idle, 146 s with the machine's load at 7; when another
/// 2-thread llama.cpp process runs beside it, both wait at OpenMP barriers for threads the other
/// holds the cores with, and 20 requests took up to 55 s, hence the 15-minute limit.
#[test]
fn server_memory_stops_growing_over_300_requests() {
    let test = "server_memory_stops_growing_over_300_requests";
    let Some((llama, src)) = prerequisites(test) else {
        return;
    };
    let _g = heavy();
    // generous: on a machine shared with parallel builds the soak once reached only round 5 in 600 s
    // (OpenMP teams collapse under oversubscription); alone it takes a few minutes
    let deadline = Instant::now() + Duration::from_secs(1500);
    let f2i = f2i_model(&src);
    let server = Server::start(
        &llama,
        &f2i,
        &["-t", "2", "-c", "2048", "-np", "4", "--cache-ram", "0"],
        Duration::from_secs(180),
    );
    let pid = server.pid();
    const ROUNDS: usize = 15;
    const CLIENTS: usize = 4;
    const PER_CLIENT: usize = 5; // 20 requests per round, 300 in all
    let topics = [
        "rivers",
        "the history of mathematics",
        "cats",
        "how a compiler turns source code into machine code",
        "tea",
        "the planets of the solar system and their moons",
    ];
    let mut samples = Vec::new();
    let t0 = Instant::now();
    for round in 0..ROUNDS {
        within(deadline, &format!("round {round}"));
        std::thread::scope(|s| {
            for c in 0..CLIENTS {
                let server = &server;
                s.spawn(move || {
                    for i in 0..PER_CLIENT {
                        let n = (round * CLIENTS + c) * PER_CLIENT + i;
                        let prompt =
                            format!("Note {n}: a few words about {}:", topics[n % topics.len()]);
                        let v = completion(server, &prompt, 4, false)
                            .unwrap_or_else(|e| panic!("request {n}: {e}"));
                        assert!(
                            v["tokens_predicted"].as_u64().is_some_and(|t| t >= 1),
                            "request {n} generated nothing: {v}"
                        );
                    }
                });
            }
        });
        let rss = proc_status_kib(pid, "VmRSS").expect("VmRSS of llama-server");
        let anon = proc_status_kib(pid, "RssAnon").expect("RssAnon of llama-server");
        samples.push((rss, anon));
    }
    eprintln!(
        "300 requests in {:?}; VmRSS/RssAnon KiB every 20 requests: {samples:?}",
        t0.elapsed()
    );
    let third = ROUNDS / 3;
    let max_of = |s: &[(u64, u64)]| s.iter().map(|x| x.0).max().unwrap_or(0);
    let (middle, last) = (
        max_of(&samples[third..2 * third]),
        max_of(&samples[2 * third..]),
    );
    assert!(
        last <= middle + 512,
        "resident memory still grows: max {last} KiB in the last third vs {middle} KiB in the \
         middle third ({samples:?})"
    );
    assert_plugin_ran(&server.log_text(), "llama-server soak");
    let (status, _) = server.stop(Duration::from_secs(30));
    assert!(status.success(), "llama-server exited with {status}");
}
