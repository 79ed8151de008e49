#!/usr/bin/env python3
"""TEST DOUBLE — a small fake of `deepedge serve`, for testing the client and load-test scripts only.

It is not a model and not a reference: it speaks the HTTP interface of `deepedge serve` (docs/serve.md) over a
toy "model" whose tokens are UTF-8 bytes and whose greedy next token is a hash of the recent tokens, so that
`scripts/serve_client_test.py` and `scripts/loadtest_serve.py` can be exercised before (and independently of)
the real server. A step loop imitates continuous batching (one step serves every active sequence, costing a
fixed part plus a small part per sequence, as a memory-bound decoder does), a prefix cache (prefill time is
proportional to the prompt tokens not already cached) and the Prometheus metrics of the real server.

`--fault NAME` makes it misbehave in one known way, so the tests can check that the scripts catch it.
Standard library only.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
import queue
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = (
    "none",
    "batch-divergence",  # greedy tokens change when several sequences share a step
    "leak",  # every request keeps 2 MiB alive forever
    "5xx-on-bad-field",  # a wrongly typed field gives 500 instead of 400
    "no-prefix-cache",  # every prompt is prefilled from scratch
    "plain-text-errors",  # error bodies are plain text, not OpenAI's JSON shape
    "unnormalized-embeddings",  # embedding vectors are not unit length
    "miscount-metrics",  # deepedge_generated_tokens_total counts one token too many per request
    "no-done",  # streams end without `data: [DONE]`
)

EOS = 0
BYTE_OFFSET = 3  # ids 0..2 are special; byte b is id b + 3
VOCAB = 256 + BYTE_OFFSET
ALPHABET = b"abcdefghijklmnopqrstuvwxyz     ,."
EMBED_DIM = 32
PREFIX_BLOCK = 16

# Simulated costs (seconds): a decode step reads the weights once for the whole batch.
STEP_FIXED_S = 0.020
STEP_PER_SEQUENCE_S = 0.002
PREFILL_PER_TOKEN_S = 0.0004
PREFILL_CHUNK = 256

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ITL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


def encode(text: str) -> list[int]:
    return [b + BYTE_OFFSET for b in text.encode("utf-8")]


def decode(ids: list[int]) -> str:
    return bytes(i - BYTE_OFFSET for i in ids if i >= BYTE_OFFSET).decode("utf-8", errors="replace")


def greedy_next(context: list[int], salt: int = 0) -> int:
    digest = hashlib.blake2b(bytes(x % 256 for x in context[-12:]) + salt.to_bytes(4, "little"), digest_size=4)
    return ALPHABET[int.from_bytes(digest.digest(), "little") % len(ALPHABET)] + BYTE_OFFSET


def render_chat(messages: list[dict]) -> str:
    parts = [f"<|{m['role']}|>\n{m['content']}\n" for m in messages]
    return "".join(parts) + "<|assistant|>\n"


def embed(text: str, normalize: bool) -> list[float]:
    vec = [0.0] * EMBED_DIM
    for i, b in enumerate(text.encode("utf-8")):
        vec[(b * 7 + i) % EMBED_DIM] += 1.0 + (b % 5) * 0.1
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec] if normalize else vec


class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets, self.counts, self.total, self.count = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, v: float) -> None:
        self.total += v
        self.count += 1
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1

    def render(self, name: str) -> str:
        lines = [f"# TYPE {name} histogram"]
        lines += [f'{name}_bucket{{le="{b}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        lines += [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.total}", f"{name}_count {self.count}"]
        return "\n".join(lines)


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: collections.Counter[str] = collections.Counter()
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self.prefix_hits = 0
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)


class Sequence:
    def __init__(self, prompt: list[int], max_tokens: int, temperature: float, seed: int | None):
        self.prompt, self.max_tokens, self.temperature = prompt, max_tokens, temperature
        self.rng = random.Random(seed)
        self.prefilled = 0
        self.generated: list[int] = []
        self.out: queue.Queue = queue.Queue()  # token ids, then None when finished
        self.cancelled = False
        self.started = time.monotonic()
        self.last_token_at: float | None = None


class Scheduler:
    """Continuous batching imitation: one thread runs steps; sequences join and leave between steps."""

    def __init__(self, args: argparse.Namespace, metrics: Metrics):
        self.args, self.metrics = args, metrics
        self.lock = threading.Condition()
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.active: list[Sequence] = []
        self.prefix_cache: collections.OrderedDict[tuple, None] = collections.OrderedDict()
        threading.Thread(target=self.run, daemon=True).start()

    def submit(self, seq: Sequence) -> None:
        with self.lock:
            if len(self.waiting) >= self.args.queue:
                raise ApiError(429, "the request queue is full; retry later", "rate_limit_error", "queue_full")
            self.waiting.append(seq)
            self.lock.notify()

    def depth(self) -> tuple[int, int]:
        with self.lock:
            return len(self.waiting), len(self.active)

    def cached_prefix(self, prompt: list[int]) -> int:
        if self.args.fault == "no-prefix-cache":
            return 0
        best = 0
        for cached in self.prefix_cache:
            n = 0
            for a, b in zip(cached, prompt):
                if a != b:
                    break
                n += 1
            best = max(best, n)
        best = (best // PREFIX_BLOCK) * PREFIX_BLOCK
        return min(best, len(prompt) - 1)

    def run(self) -> None:
        while True:
            with self.lock:
                while not self.waiting and not self.active:
                    self.lock.wait()
                self.active = [s for s in self.active if not s.cancelled]
                while self.waiting and len(self.active) < self.args.parallel:
                    seq = self.waiting.popleft()
                    if seq.cancelled:
                        continue
                    hit = self.cached_prefix(seq.prompt)
                    if hit > 0:
                        with self.metrics.lock:
                            self.metrics.prefix_hits += 1
                    seq.prefilled = hit
                    self.active.append(seq)
                batch = list(self.active)
            cost = STEP_FIXED_S
            for seq in batch:
                if seq.prefilled < len(seq.prompt):
                    chunk = min(PREFILL_CHUNK, len(seq.prompt) - seq.prefilled)
                    seq.prefilled += chunk
                    cost += chunk * PREFILL_PER_TOKEN_S
                else:
                    cost += STEP_PER_SEQUENCE_S
            time.sleep(cost)
            now = time.monotonic()
            for seq in batch:
                if seq.cancelled or seq.prefilled < len(seq.prompt):
                    continue
                if not seq.generated:
                    with self.lock:
                        self.prefix_cache[tuple(seq.prompt)] = None
                        self.prefix_cache.move_to_end(tuple(seq.prompt))
                        while len(self.prefix_cache) > 16:
                            self.prefix_cache.popitem(last=False)
                context = seq.prompt + seq.generated
                if seq.temperature > 0:
                    token = ALPHABET[seq.rng.randrange(len(ALPHABET))] + BYTE_OFFSET
                else:
                    salt = len(batch) if self.args.fault == "batch-divergence" and len(batch) > 1 else 0
                    token = greedy_next(context, salt)
                seq.generated.append(token)
                with self.metrics.lock:
                    self.metrics.generated_tokens += 2 if self.args.fault == "miscount-metrics" and len(seq.generated) == 1 else 1
                    if seq.last_token_at is None:
                        self.metrics.ttft.observe(now - seq.started)
                    else:
                        self.metrics.itl.observe(now - seq.last_token_at)
                seq.last_token_at = now
                seq.out.put(token)
                if len(seq.generated) >= seq.max_tokens:
                    seq.out.put(None)
                    seq.cancelled = True  # leaves the batch at the next step


LEAKED: list[bytearray] = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "FakeServer"

    def log_message(self, fmt: str, *args) -> None:  # quiet
        pass

    # --- plumbing -------------------------------------------------------------------------------------------
    def send_json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_error_body(self, err: ApiError) -> None:
        if self.server.args.fault == "plain-text-errors":
            data = err.message.encode()
            self.send_response(err.status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_json(err.status, {"error": {"message": err.message, "type": err.kind, "code": err.code}})

    def count(self, status: int) -> None:
        # Like the real server, every response is counted, /health and /metrics included.
        with self.server.metrics.lock:
            self.server.metrics.requests[str(status)] += 1

    def check_key(self) -> None:
        key = self.server.args.api_key
        if key and self.headers.get("Authorization") != f"Bearer {key}":
            raise ApiError(401, "missing or wrong API key", "authentication_error", "invalid_api_key")

    def read_body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        model = body.get("model")
        if model is not None and model != self.server.model_id:
            raise ApiError(404, f"model '{model}' does not exist; this server serves '{self.server.model_id}'",
                           "invalid_request_error", "model_not_found")
        return body

    def bad_field(self, message: str) -> ApiError:
        if self.server.args.fault == "5xx-on-bad-field":
            return ApiError(500, "internal error", "server_error")
        return ApiError(400, message)

    # --- routes ---------------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        status = 200
        try:
            if self.path == "/health":
                if time.monotonic() < self.server.ready_at:
                    raise ApiError(503, "the model is loading", "server_error", "loading")
                self.send_json(200, {"status": "ok"})
            elif self.path == "/metrics":  # like /health, open without the key (for scrapers and probes)
                data = self.server.render_metrics().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif self.path == "/v1/models":
                self.check_key()
                self.send_json(200, {"object": "list", "data": [self.server.model_card()]})
            elif self.path.startswith("/v1/models/"):
                self.check_key()
                wanted = self.path.removeprefix("/v1/models/")
                if wanted != self.server.model_id:
                    raise ApiError(404, f"model '{wanted}' does not exist; this server serves "
                                        f"'{self.server.model_id}'", "invalid_request_error", "model_not_found")
                self.send_json(200, self.server.model_card())
            else:
                raise ApiError(404, f"no route GET {self.path}", "invalid_request_error", "not_found")
        except ApiError as e:
            status = e.status
            self.send_error_body(e)
        self.count(status)

    def do_POST(self) -> None:
        status = 200
        try:
            self.check_key()
            routes = {"/v1/chat/completions": self.completions, "/v1/completions": self.completions,
                      "/v1/embeddings": self.embeddings}
            if self.path not in routes:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                raise ApiError(404, f"no route POST {self.path}", "invalid_request_error", "not_found")
            body = self.read_body()
            routes[self.path](body)
        except ApiError as e:
            status = e.status
            self.send_error_body(e)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; its sequence was cancelled
        self.count(status)

    def embeddings(self, body: dict) -> None:
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(s, str) for s in inputs):
            raise self.bad_field("'input' must be a string or a non-empty list of strings")
        normalize = self.server.args.fault != "unnormalized-embeddings"
        data = [{"object": "embedding", "index": i, "embedding": embed(s, normalize)} for i, s in enumerate(inputs)]
        n = sum(len(encode(s)) for s in inputs)
        self.send_json(200, {"object": "list", "data": data, "model": self.server.model_id,
                             "usage": {"prompt_tokens": n, "total_tokens": n}})

    def completions(self, body: dict) -> None:
        chat = self.path == "/v1/chat/completions"
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages or not all(
                    isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in messages):
                raise self.bad_field("'messages' must be a non-empty list of {role, content} objects")
            prompt = encode(render_chat(messages))
        else:
            p = body.get("prompt")
            if isinstance(p, str):
                prompt = encode(p)
            elif isinstance(p, list) and p and all(isinstance(x, int) and not isinstance(x, bool) for x in p):
                bad = [x for x in p if not 0 <= x < VOCAB]
                if bad:
                    raise self.bad_field(f"token id {bad[0]} is outside the vocabulary (0..{VOCAB - 1})")
                prompt = list(p)
            else:
                raise self.bad_field("'prompt' must be a string or a non-empty list of token ids")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens", 16))
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise self.bad_field("'max_tokens' must be a positive integer")
        temperature = body.get("temperature", 1.0)
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 <= temperature <= 2:
            raise self.bad_field("'temperature' must be a number in [0, 2]")
        seed = body.get("seed")
        if len(prompt) + max_tokens > self.server.args.ctx:
            raise self.bad_field(f"the prompt ({len(prompt)} tokens) plus max_tokens ({max_tokens}) exceeds the "
                                 f"context of {self.server.args.ctx} tokens")
        stream = body.get("stream") is True
        include_usage = stream and isinstance(body.get("stream_options"), dict) and \
            body["stream_options"].get("include_usage") is True
        seq = Sequence(prompt, max_tokens, float(temperature), seed)
        self.server.scheduler.submit(seq)
        with self.server.metrics.lock:
            self.server.metrics.prompt_tokens += len(prompt)
        if self.server.args.fault == "leak":
            LEAKED.append(bytearray(b"\x01" * (2 << 20)))  # written, so resident
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{random.getrandbits(48):012x}"
        created = int(time.time())
        obj = "chat.completion" if chat else "text_completion"
        model = self.server.model_id

        def usage() -> dict:
            return {"prompt_tokens": len(prompt), "completion_tokens": len(seq.generated),
                    "total_tokens": len(prompt) + len(seq.generated)}

        if not stream:
            while seq.out.get() is not None:
                pass
            text = decode(seq.generated)
            choice = {"index": 0, "finish_reason": "length"}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            self.send_json(200, {"id": rid, "object": obj, "created": created, "model": model,
                                 "choices": [choice], "usage": usage()})
            return

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(payload: dict | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            raw = f"data: {data}\n\n".encode()
            self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
            self.wfile.flush()

        def chunk(delta_text: str | None, finish: str | None) -> dict:
            if chat:
                delta = {} if delta_text is None else {"content": delta_text}
                if delta_text is not None and len(seq.generated) <= 1:
                    delta["role"] = "assistant"
                c = {"index": 0, "delta": delta, "finish_reason": finish}
            else:
                c = {"index": 0, "text": delta_text or "", "finish_reason": finish}
            out = {"id": rid, "object": obj + (".chunk" if chat else ""), "created": created, "model": model,
                   "choices": [c]}
            if include_usage:
                out["usage"] = None
            return out

        try:
            while (token := seq.out.get()) is not None:
                event(chunk(decode([token]), None))
            event(chunk(None, "length"))
            if include_usage:
                event({"id": rid, "object": obj + (".chunk" if chat else ""), "created": created, "model": model,
                       "choices": [], "usage": usage()})
            if self.server.args.fault != "no-done":
                event("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            seq.cancelled = True
            raise


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 32+ clients connect at once; the default backlog of 5 resets connections

    def __init__(self, args: argparse.Namespace):
        super().__init__((args.host, args.port), Handler)
        self.args = args
        self.model_id = args.model_id
        self.metrics = Metrics()
        self.scheduler = Scheduler(args, self.metrics)
        self.ready_at = time.monotonic() + args.load_delay
        # Stands in for the model's resident weights, so that RSS growth is judged against a realistic base.
        self.weights = bytearray(b"\x01" * (args.weights_mib << 20))

    def model_card(self) -> dict:
        return {"id": self.model_id, "object": "model", "created": 0, "owned_by": "deepedge"}

    def render_metrics(self) -> str:
        waiting, active = self.scheduler.depth()
        m = self.metrics
        with m.lock:
            lines = ["# TYPE deepedge_requests_total counter"]
            lines += [f'deepedge_requests_total{{status="{s}"}} {n}' for s, n in sorted(m.requests.items())]
            lines += ["# TYPE deepedge_prompt_tokens_total counter", f"deepedge_prompt_tokens_total {m.prompt_tokens}",
                      "# TYPE deepedge_generated_tokens_total counter",
                      f"deepedge_generated_tokens_total {m.generated_tokens}",
                      "# TYPE deepedge_queue_depth gauge", f"deepedge_queue_depth {waiting}",
                      "# TYPE deepedge_active_sequences gauge", f"deepedge_active_sequences {active}",
                      "# TYPE deepedge_prefix_cache_hits_total counter",
                      f"deepedge_prefix_cache_hits_total {m.prefix_hits}",
                      m.ttft.render("deepedge_time_to_first_token_seconds"),
                      m.itl.render("deepedge_inter_token_latency_seconds")]
        return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port; the chosen one is printed")
    p.add_argument("--api-key")
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--queue", type=int, default=64)
    p.add_argument("--ctx", type=int, default=8192, help="tokens per sequence (the fake's tokens are bytes)")
    p.add_argument("--weights-mib", type=int, default=64, help="resident memory standing in for the weights")
    p.add_argument("--model-id", default="fake-model")
    p.add_argument("--load-delay", type=float, default=0.0, help="seconds during which /health answers 503")
    p.add_argument("--fault", choices=FAULTS, default="none")
    args = p.parse_args()
    server = FakeServer(args)
    print(f"fake deepedge serve listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
