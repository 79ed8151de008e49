#!/usr/bin/env python3
"""Load test of a running `deepedge serve`: batching, behaviour under load, prefix cache.

    scripts/loadtest_serve.py http://127.0.0.1:8080 --server-pid PID [--api-key KEY] [--json-out FILE]

(a) batching: 8 prompts streamed one at a time, then the same 8 at once; the aggregate decode rate of the
    concurrent run over the single client's (target >= 2.5), and each request's greedy (temperature 0) output
    equal to the same request sent alone (text and completion-token count: the API returns no ids).
(b) load: --requests (default 300) from 32 concurrent clients: short and long prompts, chat and completions,
    streamed or not, ~10% closing the stream early, ~5% malformed. Every valid request must get a complete
    answer (a finish reason, usage counts, `data: [DONE]` on streams), every malformed one a 4xx JSON error in
    OpenAI's shape, no 5xx; afterwards the server's RSS (the pid) back within 10% of its idle level and the
    /metrics counters' increase consistent with what was sent and received (within bounds, since a stream cut
    short may be counted either way), then exactly equal to the usage of a quiet round of 8 complete requests.
(c) prefix cache: two requests sharing a ~1,000-token system prompt; the second's time to first token at most
    0.3x the first's (median over --prefix-trials fresh system prompts).

Prints a JSON summary and a Markdown table (throughput ratio, TTFT, p50/p99 inter-token latency), exits 1 when
a check fails. The server needs `--queue` >= the 32 clients (a 429 is counted as a failure here).
Time to first token and inter-token gaps are measured by this client, from the request's send to the first
streamed content chunk and between content chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

BATCH_PROMPTS = [
    "def quicksort(xs):",
    "Write a Python function that checks whether a string is a palindrome.",
    "The three laws of thermodynamics are",
    "// A C function that reverses a linked list\nstruct node *reverse(struct node *head) {",
    "Explain what a hash map is to a new programmer.",
    "SELECT name, COUNT(*) FROM orders",
    "Once upon a time, in a village by the sea,",
    "class Stack:\n    def __init__(self):",
]

# Gauges of memory the server keeps on purpose (its /metrics); see --rss-allow-cache.
CACHE_GAUGES = ("deepedge_prefix_cache_bytes", "deepedge_kv_cache_bytes")

SHORT_PROMPTS = ["Hello!", "What is 2 + 2?", "Name a colour.", "def add(a, b):", "Say something kind."]
LONG_PARAGRAPH = (
    "An edge device runs a language model close to where the data is produced, which keeps latency low and "
    "private data on the device. The model is quantized so its weights fit in a few hundred megabytes, and "
    "the runtime reads them through a memory map so that loading is fast. "
)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


@dataclass
class StreamResult:
    status: int
    text: str = ""
    finish_reason: str | None = None
    usage: dict | None = None
    done: bool = False
    ttft: float | None = None
    token_times: list[float] = field(default_factory=list)
    error_body: object = None
    closed_early: bool = False

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.token_times, self.token_times[1:])]


class Runner:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self.http = httpx.AsyncClient(base_url=args.url.rstrip("/").removesuffix("/v1"), headers=headers,
                                      timeout=httpx.Timeout(args.timeout), limits=limits)
        self.model = ""
        self.failures: list[str] = []
        self.summary: dict = {}
        self.side_requests = 0  # /metrics and /health calls made while counting, in case the server counts them

    def fail(self, message: str) -> None:
        self.failures.append(message)
        print(f"FAIL  {message}", file=sys.stderr)

    def check(self, ok: bool, message: str) -> bool:
        if not ok:
            self.fail(message)
        return ok

    # --- requests -------------------------------------------------------------------------------------------
    async def stream(self, path: str, body: dict, close_after: int | None = None) -> StreamResult:
        """POSTs a streaming request and reads its server-sent events; `close_after` content chunks, then hangs up."""
        body = dict(body, stream=True, stream_options={"include_usage": True})
        start = time.monotonic()
        async with self.http.stream("POST", path, json=body) as r:
            res = StreamResult(status=r.status_code)
            if r.status_code != 200:
                await r.aread()
                res.error_body = _json_or_text(r)
                return res
            pieces = []
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    res.done = True
                    break
                ev = json.loads(data)
                if ev.get("usage"):
                    res.usage = ev["usage"]
                for c in ev.get("choices") or []:
                    piece = (c.get("delta") or {}).get("content") if "delta" in c else c.get("text")
                    if piece:
                        now = time.monotonic()
                        if res.ttft is None:
                            res.ttft = now - start
                        res.token_times.append(now)
                        pieces.append(piece)
                    if c.get("finish_reason"):
                        res.finish_reason = c["finish_reason"]
                if close_after is not None and len(pieces) >= close_after:
                    res.closed_early = True
                    break  # leaving the block closes the connection mid-stream
            res.text = "".join(pieces)
            return res

    async def plain(self, path: str, body: dict) -> StreamResult:
        r = await self.http.post(path, json=body)
        res = StreamResult(status=r.status_code)
        if r.status_code != 200:
            res.error_body = _json_or_text(r)
            return res
        b = r.json()
        c = b["choices"][0]
        res.text = c["message"]["content"] if "message" in c else c["text"]
        res.finish_reason, res.usage, res.done = c.get("finish_reason"), b.get("usage"), True
        return res

    async def metrics(self) -> dict[str, float]:
        self.side_requests += 1
        r = await self.http.get("/metrics")
        r.raise_for_status()
        out: dict[str, float] = {}
        for fam in text_string_to_metric_families(r.text):
            for sample in fam.samples:
                if "le" in sample.labels:
                    continue  # histogram buckets; their _count and _sum are kept
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
        return out

    async def wait_idle(self, limit_s: float = 60.0) -> dict[str, float]:
        deadline = time.monotonic() + limit_s
        while True:
            m = await self.metrics()
            if m.get("deepedge_queue_depth", 0) == 0 and m.get("deepedge_active_sequences", 0) == 0:
                return m
            if time.monotonic() > deadline:
                self.fail(f"the server is not idle {limit_s:.0f} s after the load: queue "
                          f"{m.get('deepedge_queue_depth')}, active {m.get('deepedge_active_sequences')}")
                return m
            await asyncio.sleep(0.2)

    # --- (a) batching ---------------------------------------------------------------------------------------
    async def batching(self) -> None:
        n = self.args.batch_tokens

        def body(prompt: str) -> dict:
            return {"model": self.model, "prompt": prompt, "max_tokens": n, "temperature": 0}

        alone = [await self.stream("/v1/completions", body(p)) for p in BATCH_PROMPTS]
        together = await asyncio.gather(*(self.stream("/v1/completions", body(p)) for p in BATCH_PROMPTS))
        for label, results in (("alone", alone), ("concurrent", together)):
            for p, r in zip(BATCH_PROMPTS, results):
                self.check(r.status == 200 and r.done, f"(a) {label} {p!r}: HTTP {r.status}, complete={r.done}")
        single_tokens = sum(_decoded_after_first(r) for r in alone)
        single_time = sum(r.token_times[-1] - r.token_times[0] for r in alone if len(r.token_times) > 1)
        single_rate = single_tokens / single_time if single_time > 0 else 0.0
        # Conservative aggregate: every decoded token of the 8 over the span from the first first-token to the
        # last token of any of them.
        firsts = [r.token_times[0] for r in together if r.token_times]
        lasts = [r.token_times[-1] for r in together if r.token_times]
        agg_tokens = sum(_decoded_after_first(r) for r in together)
        span = (max(lasts) - min(firsts)) if firsts else 0.0
        agg_rate = agg_tokens / span if span > 0 else 0.0
        ratio = agg_rate / single_rate if single_rate > 0 else 0.0
        mismatches = []
        for p, a, b in zip(BATCH_PROMPTS, alone, together):
            ca, cb = (a.usage or {}).get("completion_tokens"), (b.usage or {}).get("completion_tokens")
            if a.text != b.text or ca != cb:
                at = next((i for i, (x, y) in enumerate(zip(a.text, b.text)) if x != y), min(len(a.text), len(b.text)))
                mismatches.append({"prompt": p, "first_difference_at_char": at, "alone": a.text[:200],
                                   "concurrent": b.text[:200], "tokens_alone": ca, "tokens_concurrent": cb})
        # A stream that ends early (end of text) only makes the concurrent batch smaller, so the ratio stays a
        # lower bound; too few tokens in all would make it noise.
        short = [p for p, r in zip(BATCH_PROMPTS, alone) if _decoded_after_first(r) + 1 < n]
        if short:
            print(f"note  (a) {len(short)} prompt(s) stopped before {n} tokens: {short}", file=sys.stderr)
        self.check(single_tokens >= len(BATCH_PROMPTS) * n // 2,
                   f"(a) only {single_tokens} tokens decoded by the single client, too few for a rate")
        self.check(ratio >= self.args.min_batch_ratio,
                   f"(a) aggregate decode rate of 8 concurrent streams is {ratio:.2f}x one stream's "
                   f"({agg_rate:.1f} vs {single_rate:.1f} tok/s), below {self.args.min_batch_ratio}x")
        self.check(not mismatches, f"(a) {len(mismatches)} of 8 greedy outputs change when batched: "
                                   f"{json.dumps(mismatches)[:1000]}")
        gaps = [g for r in together for g in r.gaps]
        self.summary["batching"] = {
            "single_decode_tok_s": round(single_rate, 2), "concurrent_decode_tok_s": round(agg_rate, 2),
            "ratio": round(ratio, 3), "greedy_mismatches": len(mismatches), "mismatch_details": mismatches,
            "streams_ending_early": len(short),
            "concurrent_ttft_s": _stats([r.ttft for r in together if r.ttft is not None]),
            "concurrent_itl_s": _stats(gaps), "single_itl_s": _stats([g for r in alone for g in r.gaps]),
        }

    # --- (b) under load -------------------------------------------------------------------------------------
    def make_request(self, i: int, rng: random.Random) -> dict:
        """One request of the mix: kind is valid / disconnect / malformed."""
        roll = rng.random()
        kind = "malformed" if roll < self.args.malformed_frac else \
            "disconnect" if roll < self.args.malformed_frac + self.args.disconnect_frac else "valid"
        long = rng.random() < 0.3
        prompt = (LONG_PARAGRAPH * rng.randint(3, 6) + f"\nQuestion {i}: summarize.") if long else \
            f"{rng.choice(SHORT_PROMPTS)} (#{i})"
        chat = rng.random() < 0.5
        stream = kind == "disconnect" or rng.random() < 0.6
        max_tokens = rng.randint(8, self.args.load_max_tokens)
        path = "/v1/chat/completions" if chat else "/v1/completions"
        body: dict = {"model": self.model, "max_tokens": max_tokens, "temperature": rng.choice([0, 0.7])}
        if rng.random() < 0.5:
            body["seed"] = rng.randint(0, 2**31)
        if chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        req = {"i": i, "kind": kind, "path": path, "body": body, "stream": stream, "long": long}
        if kind == "disconnect":
            req["close_after"] = rng.randint(1, max(1, max_tokens // 2))
        if kind == "malformed":
            variant = i % 7
            if variant == 0:
                req["raw"] = b'{"model": "x", "messages": [{"role": "user", "content": "unterminated'
            elif variant == 1:
                req["raw"] = b"[1, 2, 3]"
            elif variant == 2:
                body.pop("messages", None)
                body.pop("prompt", None)
            elif variant == 3:
                body["max_tokens"] = "many"
            elif variant == 4:
                body["model"] = "no-such-model"
            elif variant == 5:
                req["path"] = "/v1/completions"
                body.pop("messages", None)
                body["prompt"] = [0, 1, 2, 10**9]  # an id outside any vocabulary
            else:
                req["path"] = "/v1/completions"
                body.pop("messages", None)
                body["prompt"] = [1] * 200_000  # longer than any context
        return req

    async def send(self, req: dict) -> dict:
        t0 = time.monotonic()
        try:
            if "raw" in req:
                r = await self.http.post(req["path"], content=req["raw"], headers={"Content-Type": "application/json"})
                res = StreamResult(status=r.status_code, error_body=_json_or_text(r))
            elif req["stream"]:
                res = await self.stream(req["path"], req["body"], req.get("close_after"))
            else:
                res = await self.plain(req["path"], req["body"])
        except (httpx.HTTPError, json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
            return {**req, "error": f"{type(e).__name__}: {e}", "elapsed": time.monotonic() - t0}
        return {**req, "res": res, "elapsed": time.monotonic() - t0}

    def judge(self, out: dict) -> str | None:
        """Why this request's outcome is wrong, or None."""
        if "error" in out:
            return f"transport error {out['error']}"
        res: StreamResult = out["res"]
        if res.status >= 500:
            return f"HTTP {res.status} {str(res.error_body)[:200]}"
        if out["kind"] == "malformed":
            if not 400 <= res.status < 500:
                return f"malformed request answered HTTP {res.status}"
            err = res.error_body.get("error") if isinstance(res.error_body, dict) else None
            if not (isinstance(err, dict) and isinstance(err.get("message"), str) and isinstance(err.get("type"), str)):
                return f"malformed request's {res.status} body is not an OpenAI error: {str(res.error_body)[:200]}"
            return None
        if res.status != 200:
            return f"valid request answered HTTP {res.status} {str(res.error_body)[:200]}"
        if out["kind"] == "disconnect":
            return None if res.closed_early or res.done else "stream ended before the client hung up, incomplete"
        u = res.usage or {}
        if not res.done:
            return "stream did not end with data: [DONE]" if out["stream"] else "incomplete answer"
        if res.finish_reason not in ("stop", "length"):
            return f"finish_reason {res.finish_reason!r}"
        if not isinstance(u.get("completion_tokens"), int) or not isinstance(u.get("prompt_tokens"), int):
            return f"no usage counts: {u}"
        if res.finish_reason == "length" and u["completion_tokens"] != out["body"]["max_tokens"]:
            return f"finish_reason length after {u['completion_tokens']} of {out['body']['max_tokens']} tokens"
        return None

    async def load(self) -> None:
        pid = self.args.server_pid
        # Warm up (pages the weights in) before taking the idle RSS.
        await self.plain("/v1/completions", {"model": self.model, "prompt": "warm up", "max_tokens": 4})
        await self.wait_idle()
        await asyncio.sleep(1.0)
        idle = read_rss(pid)
        before = await self.metrics()
        side_before = self.side_requests
        rng = random.Random(self.args.seed)
        reqs = [self.make_request(i, rng) for i in range(self.args.requests)]
        pending = asyncio.Queue()
        for r in reqs:
            pending.put_nowait(r)
        outs: list[dict] = []

        async def client() -> None:
            while not pending.empty():
                outs.append(await self.send(pending.get_nowait()))

        t0 = time.monotonic()
        await asyncio.gather(*(client() for _ in range(self.args.clients)))
        wall = time.monotonic() - t0
        after = await self.wait_idle()
        side = self.side_requests - side_before
        # Memory the server says it keeps on purpose after the load (prefix cache, KV slots grown to size).
        cache_growth = sum(max(0.0, after.get(g, 0) - before.get(g, 0)) for g in CACHE_GAUGES)
        allowed = cache_growth if self.args.rss_allow_cache else 0.0
        # RSS: allow the server a few seconds to release what the load used.
        rss_after = read_rss(pid)
        deadline = time.monotonic() + self.args.rss_settle_s
        while rss_after["rss"] - allowed > idle["rss"] * 1.10 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            rss_after = read_rss(pid)

        problems = [(o["i"], o["kind"], why) for o in outs if (why := self.judge(o))]
        for i, kind, why in problems[:20]:
            self.fail(f"(b) request {i} ({kind}): {why}")
        if len(problems) > 20:
            self.fail(f"(b) ... and {len(problems) - 20} more bad answers")
        growth = rss_after["rss"] / idle["rss"] - 1
        judged = (rss_after["rss"] - allowed) / idle["rss"] - 1
        self.check(judged <= 0.10, f"(b) RSS {rss_after['rss'] / 2**20:.1f} MiB after the load vs "
                                   f"{idle['rss'] / 2**20:.1f} MiB idle (+{growth:.1%}, limit +10%"
                                   + (f", {allowed / 2**20:.1f} MiB of reported caches allowed" if allowed else
                                      f"; the server reports {cache_growth / 2**20:.1f} MiB more in its caches: "
                                      f"a smaller --prefix-cache-mb or --rss-allow-cache") + ")")

        counts = {k: sum(1 for o in outs if o["kind"] == k) for k in ("valid", "malformed", "disconnect")}
        ok = [o for o in outs if "res" in o and o["kind"] == "valid" and o["res"].status == 200]
        cut = [o for o in outs if "res" in o and o["kind"] == "disconnect"]
        self.check_metrics(before, after, ok, cut, counts["malformed"], side)
        await self.exact_accounting()
        statuses: dict[str, int] = {}
        for o in outs:
            s = str(o["res"].status) if "res" in o else "transport-error"
            statuses[s] = statuses.get(s, 0) + 1
        streams = [o["res"] for o in ok if o["stream"]]
        self.summary["load"] = {
            "requests": len(outs), "clients": self.args.clients, "wall_s": round(wall, 2), "kinds": counts,
            "http_statuses": statuses, "bad_answers": len(problems),
            "generated_tokens": sum(o["res"].usage["completion_tokens"] for o in ok if o["res"].usage),
            "ttft_s": _stats([r.ttft for r in streams if r.ttft is not None]),
            "itl_s": _stats([g for r in streams for g in r.gaps]),
            "rss_idle_mib": round(idle["rss"] / 2**20, 1), "rss_after_mib": round(rss_after["rss"] / 2**20, 1),
            "rss_anon_idle_mib": round(idle["anon"] / 2**20, 1),
            "rss_anon_after_mib": round(rss_after["anon"] / 2**20, 1), "rss_growth": round(growth, 4),
            "reported_cache_growth_mib": round(cache_growth / 2**20, 1), "rss_growth_judged": round(judged, 4),
        }

    def check_metrics(self, before: dict, after: dict, ok: list[dict], cut: list[dict], malformed: int,
                      side: int) -> None:
        """The counters' increase over the load must match what the clients saw."""
        def delta(name: str) -> float:
            return after.get(name, 0) - before.get(name, 0)

        def by_status(prefix: str) -> float:
            keys = {k for k in (*before, *after) if k.startswith("deepedge_requests_total{")}
            return sum(delta(k) for k in keys if _label(k, "status").startswith(prefix))

        slack = side + 1  # the /metrics scrapes in between (and the one `before` came from) may be counted
        n_ok, n_cut = len(ok), len(cut)
        got_2xx, got_4xx, got_5xx = by_status("2"), by_status("4"), by_status("5")
        self.check(n_ok <= got_2xx <= n_ok + n_cut + slack,
                   f"(b) /metrics counts {got_2xx:.0f} 2xx requests; the clients saw {n_ok} complete and {n_cut} "
                   f"cut streams")
        self.check(got_4xx == malformed, f"(b) /metrics counts {got_4xx:.0f} 4xx; {malformed} malformed were sent")
        self.check(got_5xx == 0, f"(b) /metrics counts {got_5xx:.0f} 5xx")
        gen = sum(o["res"].usage["completion_tokens"] for o in ok if o["res"].usage)
        gen_cut_max = sum(o["body"]["max_tokens"] for o in cut)
        d_gen = delta("deepedge_generated_tokens_total")
        self.check(gen <= d_gen <= gen + gen_cut_max,
                   f"(b) deepedge_generated_tokens_total rose by {d_gen:.0f}; the complete answers had {gen} tokens "
                   f"and the cut streams at most {gen_cut_max}")
        prompt = sum(o["res"].usage["prompt_tokens"] for o in ok if o["res"].usage)
        d_prompt = delta("deepedge_prompt_tokens_total")
        # A cut stream may or may not have been counted; its prompt has fewer tokens than its body has bytes.
        cut_max = sum(len(json.dumps(o["body"])) for o in cut)
        self.check(prompt <= d_prompt <= prompt + cut_max,
                   f"(b) deepedge_prompt_tokens_total rose by {d_prompt:.0f}; complete answers had {prompt} prompt "
                   f"tokens (cut streams at most {cut_max})")
        ttft_count = delta("deepedge_time_to_first_token_seconds_count")
        self.check(n_ok <= ttft_count <= n_ok + n_cut,
                   f"(b) the TTFT histogram counted {ttft_count:.0f} first tokens for {n_ok} complete and "
                   f"{n_cut} cut requests")
        itl_count = delta("deepedge_inter_token_latency_seconds_count")
        self.check(gen - n_ok <= itl_count <= d_gen,
                   f"(b) the inter-token histogram counted {itl_count:.0f} gaps for {d_gen:.0f} generated tokens")
        for gauge in ("deepedge_queue_depth", "deepedge_active_sequences"):
            self.check(after.get(gauge) == 0, f"(b) {gauge} is {after.get(gauge)} after the load, expected 0")
        self.summary["metrics_delta"] = {
            "requests_2xx": got_2xx, "requests_4xx": got_4xx, "requests_5xx": got_5xx, "generated_tokens": d_gen,
            "prompt_tokens": d_prompt, "ttft_count": ttft_count, "itl_count": itl_count,
        }

    async def exact_accounting(self, n: int = 8) -> None:
        """A quiet round of complete requests (no hang-ups, no errors), whose counters must match exactly."""
        await self.wait_idle()
        before = await self.metrics()
        side0 = self.side_requests
        reqs = []
        for i in range(n):
            chat = i % 2 == 0
            body: dict = {"model": self.model, "max_tokens": 8 + 2 * i, "temperature": 0}
            if chat:
                body["messages"] = [{"role": "user", "content": f"Count to {i + 3}."}]
            else:
                body["prompt"] = f"{SHORT_PROMPTS[i % len(SHORT_PROMPTS)]} [{i}]"
            reqs.append({"i": i, "kind": "valid", "body": body, "stream": i % 4 < 2,
                         "path": "/v1/chat/completions" if chat else "/v1/completions"})
        outs = await asyncio.gather(*(self.send(r) for r in reqs))
        after = await self.wait_idle()
        side = self.side_requests - side0
        bad = [(o["i"], why) for o in outs if (why := self.judge(o))]
        if not self.check(not bad, f"(b) exact accounting round: bad answers {bad}"):
            return
        gen = sum(o["res"].usage["completion_tokens"] for o in outs)
        prompt = sum(o["res"].usage["prompt_tokens"] for o in outs)

        def delta(name: str) -> float:
            return after.get(name, 0) - before.get(name, 0)

        got_200 = delta('deepedge_requests_total{status=200}')
        self.check(n <= got_200 <= n + side + 1,
                   f"(b) exact round: /metrics counts {got_200:.0f} answers with status 200 for {n} requests "
                   f"(+ up to {side + 1} scrapes)")
        expected = {"deepedge_generated_tokens_total": gen, "deepedge_prompt_tokens_total": prompt,
                    "deepedge_time_to_first_token_seconds_count": n,
                    "deepedge_inter_token_latency_seconds_count": gen - n}
        for name, want in expected.items():
            self.check(delta(name) == want, f"(b) exact round of {n} complete requests: {name} rose by "
                                            f"{delta(name):.0f}, the answers' usage says {want}")
        self.summary["metrics_exact_round"] = {"requests": n, "generated_tokens": gen, "prompt_tokens": prompt,
                                               **{k: delta(k) for k in expected}}

    # --- (c) prefix cache -----------------------------------------------------------------------------------
    async def prefix_cache(self) -> None:
        ratios, firsts, seconds, prompt_tokens = [], [], [], []
        hits_before = (await self.metrics()).get("deepedge_prefix_cache_hits_total", 0)
        for trial in range(self.args.prefix_trials):
            system = system_prompt(f"{trial}-{random.getrandbits(40):010x}", self.args.prefix_lines)
            results = []
            for question in ("What is rule 3 about?", "Summarize rule 40 in five words."):
                body = {"model": self.model, "max_tokens": 4, "temperature": 0,
                        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}
                results.append(await self.stream("/v1/chat/completions", body))
            a, b = results
            if not self.check(a.ttft is not None and b.ttft is not None,
                              f"(c) trial {trial}: no first token (HTTP {a.status}, {b.status}: "
                              f"{str(a.error_body or b.error_body)[:300]})"):
                continue
            ratios.append(b.ttft / a.ttft)
            firsts.append(a.ttft)
            seconds.append(b.ttft)
            prompt_tokens.append((a.usage or {}).get("prompt_tokens"))
        hits = (await self.metrics()).get("deepedge_prefix_cache_hits_total", 0) - hits_before
        median = statistics.median(ratios) if ratios else None
        self.check(median is not None and median <= self.args.max_prefix_ratio,
                   f"(c) second request's TTFT is {median}x the first's (median over {len(ratios)} trials), "
                   f"limit {self.args.max_prefix_ratio}x")
        self.check(all(isinstance(n, int) and n >= 900 for n in prompt_tokens),
                   f"(c) the shared prompts are {prompt_tokens} tokens, expected >= 900 (raise --prefix-lines)")
        self.check(hits >= len(ratios), f"(c) deepedge_prefix_cache_hits_total rose by {hits} over {len(ratios)} "
                                        f"second requests")
        self.summary["prefix_cache"] = {
            "trials": len(ratios), "prompt_tokens": prompt_tokens, "ttft_first_s": [round(x, 4) for x in firsts],
            "ttft_second_s": [round(x, 4) for x in seconds], "ratio_median": median and round(median, 4),
            "hits_delta": hits,
        }

    async def main(self) -> int:
        r = await self.http.get("/v1/models")
        r.raise_for_status()
        self.model = r.json()["data"][0]["id"]
        phases = {"batching": self.batching, "load": self.load, "prefix": self.prefix_cache}
        for name in self.args.phases.split(","):
            t0 = time.monotonic()
            print(f"phase {name} ...", file=sys.stderr)
            await phases[name]()
            print(f"phase {name}: {time.monotonic() - t0:.1f} s", file=sys.stderr)
        await self.http.aclose()
        self.summary["failures"] = self.failures
        self.summary["passed"] = not self.failures
        text = json.dumps(self.summary, indent=2)
        print(text)
        if self.args.json_out:
            Path(self.args.json_out).write_text(text + "\n")
        print(markdown(self.summary))
        return 1 if self.failures else 0


def system_prompt(nonce: str, lines: int) -> str:
    """A long system prompt; the nonce comes first so that no earlier request shares its prefix."""
    topics = ["units", "dates", "code style", "tone", "safety", "lists", "numbers", "names", "tables", "links"]
    body = [f"Session {nonce}. You are a careful assistant. Follow these rules."]
    body += [f"Rule {i}: when the user asks about {topics[i % len(topics)]}, answer in at most {i % 7 + 2} "
             f"sentences and cite rule {i}." for i in range(1, lines + 1)]
    return "\n".join(body)


def _decoded_after_first(r: StreamResult) -> int:
    """Tokens decoded after the first one: the usage count when the stream has one (a chunk may carry several
    tokens, or none while a UTF-8 character is incomplete), else the content chunks."""
    if r.usage and isinstance(r.usage.get("completion_tokens"), int) and r.token_times:
        return max(0, r.usage["completion_tokens"] - 1)
    return max(0, len(r.token_times) - 1)


def read_rss(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile"):
            fields[k] = int(v.split()[0]) * 1024
    return {"rss": fields["VmRSS"], "anon": fields.get("RssAnon", 0), "file": fields.get("RssFile", 0)}


def _json_or_text(r: httpx.Response) -> object:
    try:
        return r.json()
    except ValueError:
        return r.text


def _label(key: str, name: str) -> str:
    inside = key[key.index("{") + 1:-1]
    for part in inside.split(","):
        k, _, v = part.partition("=")
        if k == name:
            return v
    return ""


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(percentile(values, 50), 4), "p99": round(percentile(values, 99), 4),
            "mean": round(statistics.fmean(values), 4)}


def markdown(s: dict) -> str:
    rows = ["| figure | value |", "|---|---|"]
    if b := s.get("batching"):
        rows.append(f"| decode, 1 stream (tok/s) | {b['single_decode_tok_s']} |")
        rows.append(f"| decode, 8 concurrent streams, aggregate (tok/s) | {b['concurrent_decode_tok_s']} |")
        rows.append(f"| batching throughput ratio (8 / 1) | **{b['ratio']}×** |")
        rows.append(f"| greedy outputs changed by batching | {b['greedy_mismatches']} / 8 |")
        rows.append(f"| inter-token latency, 8 streams, p50 / p99 (ms) | {_ms(b['concurrent_itl_s'])} |")
    if lo := s.get("load"):
        rows.append(f"| load: requests / clients / wall (s) | {lo['requests']} / {lo['clients']} / {lo['wall_s']} |")
        rows.append(f"| load: bad answers, 5xx | {lo['bad_answers']}, "
                    f"{sum(v for k, v in lo['http_statuses'].items() if k.startswith('5'))} |")
        rows.append(f"| load: time to first token, p50 / p99 (ms) | {_ms(lo['ttft_s'])} |")
        rows.append(f"| load: inter-token latency, p50 / p99 (ms) | {_ms(lo['itl_s'])} |")
        rows.append(f"| load: RSS idle → after (MiB) | {lo['rss_idle_mib']} → {lo['rss_after_mib']} "
                    f"({lo['rss_growth']:+.1%}) |")
    if p := s.get("prefix_cache"):
        first = statistics.median(p["ttft_first_s"]) * 1000 if p["ttft_first_s"] else float("nan")
        second = statistics.median(p["ttft_second_s"]) * 1000 if p["ttft_second_s"] else float("nan")
        rows.append(f"| prefix cache: TTFT cold → shared prefix (ms), prompt {p['prompt_tokens'][:1]} tokens | "
                    f"{first:.0f} → {second:.0f} (**{p['ratio_median']}×**) |")
    verdict = "all passed" if s.get("passed") else f"{len(s.get('failures', []))} failed"
    rows.append(f"| checks | {verdict} |")
    return "\n".join(rows)


def _ms(st: dict) -> str:
    return f"{st['p50'] * 1000:.1f} / {st['p99'] * 1000:.1f}" if st.get("n") else "n/a"


def main() -> int:
    p = argparse.ArgumentParser(description="Load test of a running deepedge serve (see the module doc).")
    p.add_argument("url", help="the server's base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--server-pid", type=int, required=True, help="the server's process id, for its RSS")
    p.add_argument("--api-key")
    p.add_argument("--phases", default="batching,load,prefix", help="comma-separated: batching, load, prefix")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--disconnect-frac", type=float, default=0.10)
    p.add_argument("--malformed-frac", type=float, default=0.05)
    p.add_argument("--load-max-tokens", type=int, default=48)
    p.add_argument("--batch-tokens", type=int, default=64, help="tokens per request in the batching phase")
    p.add_argument("--min-batch-ratio", type=float, default=2.5)
    p.add_argument("--max-prefix-ratio", type=float, default=0.3)
    p.add_argument("--prefix-trials", type=int, default=3)
    p.add_argument("--prefix-lines", type=int, default=45, help="rules in the shared system prompt (~22 tokens each)")
    p.add_argument("--rss-settle-s", type=float, default=10.0)
    p.add_argument("--rss-allow-cache", action="store_true",
                   help="subtract the growth of the server's reported cache gauges (prefix cache, KV) from the RSS "
                        "after the load before the 10%% check (trusts the server's accounting)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--json-out", help="also write the JSON summary here")
    args = p.parse_args()
    if not Path(f"/proc/{args.server_pid}/status").exists():
        p.error(f"no process {args.server_pid} (the RSS is read from /proc, Linux only)")
    return asyncio.run(Runner(args).main())


if __name__ == "__main__":
    sys.exit(main())
