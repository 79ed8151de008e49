//! `deepedge serve` end to end: the real binary on a loopback port, driven by a real HTTP client.
//!
//! The tiny fixture model (always present) covers the HTTP contract — shapes, errors, streaming, auth,
//! cancellation, shutdown — and the greedy-equality checks against `deepedge run`; the cached
//! Qwen2.5-Coder-0.5B (required in CI) adds a real chat template and tokenizer, batching invariance and
//! the queue limit.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn tiny_model() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/tiny/qwen2.gguf");
    root.display().to_string()
}

/// A model file from the cache, or `None` (SKIP) when it is not cached and not required.
fn cached_model(file: &str) -> Option<String> {
    let cache = std::env::var_os("DEEPEDGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/deepedge")
        });
    let path = cache.join("models").join(file);
    if path.exists() {
        return Some(path.display().to_string());
    }
    assert!(
        std::env::var("DEEPEDGE_REQUIRE_MODELS").as_deref() != Ok("1"),
        "{} missing with DEEPEDGE_REQUIRE_MODELS=1",
        path.display()
    );
    eprintln!(
        "SKIP: {} not cached; run scripts/fetch-models.sh",
        path.display()
    );
    None
}

fn qwen() -> Option<String> {
    cached_model("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
}

/// A running `deepedge serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
    agent: ureq::Agent,
}

impl Server {
    fn start(model: &str, extra: &[&str]) -> Self {
        Self::start_with_env(model, extra, &[])
    }

    fn start_with_env(model: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_deepedge"));
        command
            .args(["serve", "-m", model, "--port", "0", "-t", "2"])
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("DEEPEDGE_API_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("deepedge serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        let server = Self { child, url, agent };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            let (status, _) = self.get("/health");
            if status == 200 {
                return;
            }
            assert_eq!(status, 503, "/health while loading");
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the model did not load"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let mut r = self
            .agent
            .get(format!("{}{path}", self.url))
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    fn post_raw(&self, path: &str, body: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("Content-Type", "application/json");
        if let Some(k) = key {
            request = request.header("Authorization", format!("Bearer {k}"));
        }
        let mut r = request.send(body).unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path} answered non-JSON ({e}): {text}"));
        (status, value)
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let (status, value) = self.post_raw(path, &body.to_string(), None);
        assert_eq!(status, 200, "{path} {body}: {value}");
        value
    }

    /// A streamed request's `data:` payloads, up to and including `[DONE]`.
    fn stream(&self, path: &str, body: Value) -> Vec<String> {
        let mut r = self
            .agent
            .post(format!("{}{path}", self.url))
            .send_json(&body)
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let text = r.body_mut().read_to_string().unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_owned)
            .collect()
    }

    fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
            .parse()
            .unwrap()
    }

    /// Sends SIGTERM and waits for the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `deepedge run --json` for the same request.
fn run_json(model: &str, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_deepedge"))
        .args(["run", "-m", model, "-t", "2", "--json", "--temp", "0"])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn text_of(answer: &Value) -> String {
    let choice = &answer["choices"][0];
    choice["text"]
        .as_str()
        .or_else(|| choice["message"]["content"].as_str())
        .unwrap_or_else(|| panic!("no text in {answer}"))
        .to_owned()
}

/// The concatenated text of streamed chunks, and the last chunk's finish reason.
fn streamed_text(chunks: &[String]) -> (String, String) {
    assert_eq!(
        chunks.last().map(String::as_str),
        Some("[DONE]"),
        "{chunks:?}"
    );
    let mut text = String::new();
    let mut finish = String::new();
    for c in &chunks[..chunks.len() - 1] {
        let v: Value = serde_json::from_str(c).unwrap();
        assert!(v.get("error").is_none(), "{v}");
        for choice in v["choices"].as_array().unwrap() {
            let piece = choice["text"]
                .as_str()
                .or_else(|| choice["delta"]["content"].as_str());
            text.push_str(piece.unwrap_or(""));
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = f.to_owned();
            }
        }
    }
    (text, finish)
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: Option<&str>) {
    assert_eq!(status, want_status, "{body}");
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["type"].as_str().is_some(), "{body}");
    if let Some(code) = want_code {
        assert_eq!(error["code"], code, "{body}");
    }
}

#[test]
fn completions_equal_deepedge_run_and_streams_equal_answers() {
    let model = tiny_model();
    let server = Server::start(&model, &["--parallel", "2"]);
    let (status, health) = server.get("/health");
    assert_eq!((status, health.contains("\"ok\"")), (200, true));
    let models: Value = serde_json::from_str(&server.get("/v1/models").1).unwrap();
    assert_eq!(models["data"][0]["id"], "qwen2");
    assert_eq!(server.get("/v1/models/qwen2").0, 200);

    let reference = run_json(
        &model,
        &["-p", "Once upon a time", "-n", "12", "--ignore-eos"],
    );
    let body = json!({"model": "qwen2", "prompt": "Once upon a time", "max_tokens": 12,
        "temperature": 0, "ignore_eos": true});
    let answer = server.post("/v1/completions", body.clone());
    assert_eq!(text_of(&answer), reference["text"].as_str().unwrap());
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(answer["usage"]["completion_tokens"], 12);
    assert_eq!(
        answer["usage"]["prompt_tokens"],
        reference["prompt_ids"].as_array().unwrap().len()
    );

    // Token ids are fed as they are, like `run --ids`.
    let ids: Vec<u32> = vec![5, 77, 130, 9, 201];
    let by_ids = run_json(
        &model,
        &["--ids", "5,77,130,9,201", "-n", "10", "--ignore-eos"],
    );
    let answer = server.post(
        "/v1/completions",
        json!({"prompt": ids, "max_tokens": 10, "temperature": 0, "ignore_eos": true}),
    );
    assert_eq!(text_of(&answer), by_ids["text"].as_str().unwrap());

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (text, finish) = streamed_text(&server.stream("/v1/completions", streamed));
    assert_eq!(text, reference["text"].as_str().unwrap());
    assert_eq!(finish, "length");

    // Chat: streaming equals not streaming; usage comes last when asked for.
    let chat = json!({"messages": [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a color."}], "max_tokens": 8, "temperature": 0,
        "ignore_eos": true});
    let answer = server.post("/v1/chat/completions", chat.clone());
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["role"], "assistant");
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let chunks = server.stream("/v1/chat/completions", streamed);
    let first: Value = serde_json::from_str(&chunks[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let usage: Value = serde_json::from_str(&chunks[chunks.len() - 2]).unwrap();
    for field in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(usage["usage"][field], answer["usage"][field], "{field}");
    }
    assert_eq!(streamed_text(&chunks).0, text_of(&answer));

    // A chat completion is the completion of its rendered, tokenized prompt.
    let rendered = server.post("/apply-template", json!({"messages": chat["messages"]}));
    let tokens = server.post(
        "/tokenize",
        json!({"content": rendered["prompt"], "add_special": false, "parse_special": true}),
    );
    let completion = server.post(
        "/v1/completions",
        json!({"prompt": tokens["tokens"], "max_tokens": 8, "temperature": 0, "ignore_eos": true}),
    );
    assert_eq!(text_of(&completion), text_of(&answer));
    assert_eq!(
        completion["usage"]["prompt_tokens"],
        answer["usage"]["prompt_tokens"]
    );

    let metrics_completion = server.metric("deepedge_generated_tokens_total");
    assert_eq!(metrics_completion, (12 + 10 + 12 + 8 + 8 + 8) as f64);
    assert!(server.metric("deepedge_requests_total{status=\"200\"}") >= 9.0);
    assert!(
        server.metric("deepedge_prefix_cache_hits_total") >= 1.0,
        "the chat turns share a prefix"
    );
}

#[test]
fn embeddings_are_normalized_one_per_input_in_both_encodings() {
    let server = Server::start(&tiny_model(), &[]);
    let answer = server.post(
        "/v1/embeddings",
        json!({"input": ["a cat", "a dog", "a cat"]}),
    );
    let data = answer["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    let vectors: Vec<Vec<f64>> = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["index"], i);
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    for v in &vectors {
        let norm: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    assert_eq!(vectors[0], vectors[2], "the same text embeds the same");
    assert_ne!(vectors[0], vectors[1]);
    let encoded = server.post(
        "/v1/embeddings",
        json!({"input": "a cat", "encoding_format": "base64"}),
    );
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    // JSON carries each f32 in its shortest decimal form: it reads back to the same f32.
    let as_f32: Vec<f32> = vectors[0].iter().map(|&x| x as f32).collect();
    assert_eq!(decoded, as_f32);
    assert!(answer["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn client_mistakes_get_openai_shaped_4xx() {
    let server = Server::start(&tiny_model(), &["--ctx", "64"]);
    let post = |path: &str, body: &str| server.post_raw(path, body, None);
    let (s, b) = post("/v1/completions", "{not json");
    assert_error(s, &b, 400, None);
    let (s, b) = post("/v1/completions", "");
    assert_error(s, &b, 400, None);
    let (s, b) = post(
        "/v1/completions",
        r#"{"prompt": "x", "temperature": "hot"}"#,
    );
    assert_error(s, &b, 400, None);
    let (s, b) = post("/v1/completions", r#"{"prompt": "x", "temperature": 5}"#);
    assert_error(s, &b, 400, Some("invalid_value"));
    assert_eq!(b["error"]["param"], "temperature");
    let (s, b) = post("/v1/completions", r#"{"prompt": "x", "n": 3}"#);
    assert_error(s, &b, 400, Some("unsupported_parameter"));
    let (s, b) = post("/v1/completions", r#"{"prompt": [1, 99999]}"#);
    assert_error(s, &b, 400, None);
    let (s, b) = post("/v1/chat/completions", r#"{"messages": []}"#);
    assert_error(s, &b, 400, None);
    let (s, b) = post("/v1/chat/completions", r#"{"messages": "hi"}"#);
    assert_error(s, &b, 400, None);
    let long: Vec<u32> = (0..80).map(|i| i % 200 + 1).collect();
    let (s, b) = post("/v1/completions", &json!({"prompt": long}).to_string());
    assert_error(s, &b, 400, Some("context_length_exceeded"));
    let (s, b) = post("/v1/completions", r#"{"prompt": "x", "model": "gpt-4o"}"#);
    assert_error(s, &b, 404, Some("model_not_found"));
    let (s, b) = post(
        "/v1/embeddings",
        r#"{"input": "x", "encoding_format": "hex"}"#,
    );
    assert_error(s, &b, 400, None);
    let (s, b) = post("/v1/nothing", "{}");
    assert_error(s, &b, 404, Some("not_found"));
    let (status, body) = server.get("/v1/completions");
    assert_error(status, &serde_json::from_str(&body).unwrap(), 405, None);
    let (status, body) = server.get("/v1/models/gpt-4o");
    assert_error(
        status,
        &serde_json::from_str(&body).unwrap(),
        404,
        Some("model_not_found"),
    );
    // A body over the limit is refused from its Content-Length, before it is read.
    let (s, b) = oversized_request(&server);
    assert_error(s, &b, 413, None);
    // The service is still fine, and counted every refusal as a 4xx.
    let ok = server.post("/v1/completions", json!({"prompt": "x", "max_tokens": 2}));
    assert_eq!(
        ok["usage"]["completion_tokens"].as_u64().map(|n| n <= 2),
        Some(true)
    );
    let (_, metrics) = server.get("/metrics");
    // (503s are /health's answers while the model loaded.)
    let server_errors = metrics
        .lines()
        .filter(|l| l.contains("status=\"5") && !l.contains("status=\"503\""));
    assert_eq!(server_errors.count(), 0, "{metrics}");
    assert!(server.metric("deepedge_requests_total{status=\"400\"}") >= 10.0);
}

/// Announces a 17 MiB body and reads the answer.
fn oversized_request(server: &Server) -> (u16, Value) {
    use std::io::Write;
    let addr = server.url.trim_start_matches("http://");
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        tcp,
        "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{{",
        17 << 20
    )
    .unwrap();
    let mut reader = BufReader::new(tcp);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[test]
fn api_key_guards_the_api_but_not_health() {
    let server = Server::start_with_env(&tiny_model(), &[], &[("DEEPEDGE_API_KEY", "s3cret")]);
    let body = r#"{"prompt": "x", "max_tokens": 1}"#;
    let (s, b) = server.post_raw("/v1/completions", body, None);
    assert_error(s, &b, 401, Some("invalid_api_key"));
    let (s, b) = server.post_raw("/v1/completions", body, Some("wrong"));
    assert_error(s, &b, 401, Some("invalid_api_key"));
    let (s, _) = server.post_raw("/v1/completions", body, Some("s3cret"));
    assert_eq!(s, 200);
    assert_eq!(server.get("/health").0, 200);
    assert_eq!(server.get("/metrics").0, 200);
}

#[test]
fn disconnect_cancels_and_sigterm_lets_requests_finish() {
    let server = Server::start(&tiny_model(), &["--parallel", "1"]);
    // A client that reads two chunks of a long stream and hangs up.
    let long = json!({"prompt": "tell", "max_tokens": 1500, "temperature": 0, "ignore_eos": true,
        "stream": true});
    {
        let r = server
            .agent
            .post(format!("{}/v1/completions", server.url))
            .send_json(&long)
            .unwrap();
        let mut reader = BufReader::new(r.into_body().into_reader());
        let mut seen = 0;
        let mut line = String::new();
        while seen < 2 {
            line.clear();
            reader.read_line(&mut line).unwrap();
            seen += usize::from(line.starts_with("data: "));
        }
    }
    let start = Instant::now();
    while server.metric("deepedge_requests_cancelled_total") < 1.0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the stream was not cancelled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.metric("deepedge_generated_tokens_total") < 1500.0);
    // The only sequence is free again: a new request gets served.
    let answer = server.post(
        "/v1/completions",
        json!({"prompt": "x", "max_tokens": 3,
        "ignore_eos": true}),
    );
    assert_eq!(answer["usage"]["completion_tokens"], 3);

    // SIGTERM during a request: it completes, then the process exits 0.
    let url = format!("{}/v1/completions", server.url);
    let agent = server.agent.clone();
    let in_flight = std::thread::spawn(move || {
        let mut r = agent
            .post(&url)
            .send_json(
                json!({"prompt": "x", "max_tokens": 400, "ignore_eos": true, "stream": true}),
            )
            .unwrap();
        let mut text = String::new();
        r.body_mut().as_reader().read_to_string(&mut text).unwrap();
        text
    });
    let start = Instant::now();
    while server.metric("deepedge_active_sequences") < 1.0 {
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let text = in_flight.join().unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let (streamed, finish) = streamed_text(
        &text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    );
    assert_eq!(finish, "length");
    assert!(!streamed.is_empty());
}

#[test]
fn qwen_chat_template_batching_and_queue_limit() {
    let Some(model) = qwen() else { return };
    let server = Server::start(&model, &["--parallel", "4", "--queue", "1"]);
    let prompts = [
        "def fibonacci(n):",
        "The capital of France is",
        "// A C function that reverses a string\n",
        "Here is a haiku about autumn:",
    ];
    // Alone, each prompt's greedy tokens equal `deepedge run`'s.
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| {
            let reference = run_json(&model, &["-p", p, "-n", "12", "--ignore-eos"]);
            let answer = server.post(
                "/v1/completions",
                json!({"prompt": p, "max_tokens": 12, "temperature": 0, "ignore_eos": true}),
            );
            assert_eq!(
                text_of(&answer),
                reference["text"].as_str().unwrap(),
                "{p:?}"
            );
            text_of(&answer)
        })
        .collect();
    // Together, batched: the same texts.
    std::thread::scope(|s| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| {
                let server = &server;
                s.spawn(move || {
                    text_of(&server.post(
                        "/v1/completions",
                        json!({"prompt": p, "max_tokens": 12, "temperature": 0, "ignore_eos": true}),
                    ))
                })
            })
            .collect();
        for (h, want) in handles.into_iter().zip(&alone) {
            assert_eq!(&h.join().unwrap(), want);
        }
    });

    // The real chat template: the chat answer is the completion of the rendered prompt.
    let messages = json!([{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Write hello world in Python."}]);
    let rendered = server.post("/apply-template", json!({"messages": messages}));
    let rendered = rendered["prompt"].as_str().unwrap().to_owned();
    assert!(rendered.contains("<|im_start|>user"), "{rendered}");
    let chat = server.post(
        "/v1/chat/completions",
        json!({"messages": messages, "max_tokens": 16, "temperature": 0}),
    );
    let tokens = server.post(
        "/tokenize",
        json!({"content": rendered, "add_special": false, "parse_special": true}),
    );
    let completion = server.post(
        "/v1/completions",
        json!({"prompt": tokens["tokens"], "max_tokens": 16, "temperature": 0}),
    );
    assert_eq!(text_of(&chat), text_of(&completion));
    assert!(!text_of(&chat).is_empty());

    // Four long streams fill the sequences, one request waits, the next is refused with 429.
    std::thread::scope(|s| {
        let long = json!({"prompt": "count:", "max_tokens": 60, "ignore_eos": true});
        let mut running = Vec::new();
        for _ in 0..5 {
            let server = &server;
            let body = long.clone();
            running
                .push(s.spawn(move || server.post_raw("/v1/completions", &body.to_string(), None)));
            std::thread::sleep(Duration::from_millis(100));
        }
        let start = Instant::now();
        while server.metric("deepedge_queue_depth") < 1.0 {
            assert!(start.elapsed() < Duration::from_secs(30), "nothing queued");
            std::thread::sleep(Duration::from_millis(10));
        }
        let (status, body) = server.post_raw("/v1/completions", &long.to_string(), None);
        assert_error(status, &body, 429, Some("queue_full"));
        for h in running {
            let (status, body) = h.join().unwrap();
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["usage"]["completion_tokens"], 60);
        }
    });
    assert_eq!(server.metric("deepedge_active_sequences"), 0.0);
    assert_eq!(server.metric("deepedge_queue_depth"), 0.0);
}
