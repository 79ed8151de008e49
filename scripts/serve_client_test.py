#!/usr/bin/env python3
"""Checks a running `deepedge serve` with the official `openai` Python client, used as it ships.

    scripts/serve_client_test.py http://127.0.0.1:8080 [--api-key KEY]

Checks: the model list and the model by id; chat completions, plain and streamed (the streamed text at temperature 0 equals the plain
one, the stream ends with a finish reason and a usage chunk); completions with a string prompt and with a list of
token ids; embeddings (one unit-length vector per input, in order, equal for equal inputs); /health and /metrics;
error shapes `{"error": {"message", "type", "code"}}` for malformed JSON (400), a bad field (400), an unknown route
and an unknown model (404), and — when `--api-key` is given — a missing and a wrong key (401).

Every check is run; the script prints one line per check and exits 1 if any failed.
Requirements: `pip install -r scripts/serve-requirements.txt` (see docs/serve.md).
"""

from __future__ import annotations

import argparse
import math
import sys
import traceback
from typing import Callable

import httpx
import openai

METRIC_NAMES = (
    "deepedge_requests_total",
    "deepedge_prompt_tokens_total",
    "deepedge_generated_tokens_total",
    "deepedge_queue_depth",
    "deepedge_active_sequences",
    "deepedge_prefix_cache_hits_total",
    "deepedge_time_to_first_token_seconds",
    "deepedge_inter_token_latency_seconds",
)


class CheckFailed(Exception):
    pass


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def expect_error_shape(response: httpx.Response, status: int, what: str) -> None:
    expect(response.status_code == status, f"{what}: HTTP {response.status_code}, expected {status}: "
                                           f"{response.text[:200]!r}")
    try:
        body = response.json()
    except ValueError:
        raise CheckFailed(f"{what}: the error body is not JSON: {response.text[:200]!r}") from None
    err = body.get("error") if isinstance(body, dict) else None
    expect(isinstance(err, dict), f"{what}: no 'error' object in {body!r}")
    expect(isinstance(err.get("message"), str) and err["message"], f"{what}: error.message missing in {body!r}")
    expect(isinstance(err.get("type"), str) and err["type"], f"{what}: error.type missing in {body!r}")
    expect("code" in err, f"{what}: error.code missing (null is allowed) in {body!r}")


class ClientTest:
    def __init__(self, base_url: str, api_key: str | None, timeout: float):
        self.root = base_url.rstrip("/").removesuffix("/v1")
        self.api_key = api_key
        # The openai client needs some key; when the server has none, any placeholder is ignored by it.
        self.client = openai.OpenAI(base_url=self.root + "/v1", api_key=api_key or "no-key", timeout=timeout,
                                    max_retries=0)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.root, headers=headers, timeout=timeout)
        self.model = ""
        self.results: list[tuple[str, str | None]] = []

    def run(self, name: str, check: Callable[[], None]) -> None:
        try:
            check()
            self.results.append((name, None))
            print(f"ok    {name}")
        except CheckFailed as e:
            self.results.append((name, str(e)))
            print(f"FAIL  {name}: {e}")
        except Exception as e:  # noqa: BLE001 - any exception is a failed check, reported with its type
            self.results.append((name, f"{type(e).__name__}: {e}"))
            print(f"FAIL  {name}: {type(e).__name__}: {e}")
            traceback.print_exc(limit=3)

    # --- checks ---------------------------------------------------------------------------------------------
    def health(self) -> None:
        r = httpx.get(self.root + "/health", timeout=10)  # no key: probes must reach it
        expect(r.status_code == 200, f"/health without a key: HTTP {r.status_code} {r.text[:200]!r}")

    def models(self) -> None:
        listed = self.client.models.list().data
        expect(len(listed) == 1, f"expected one model, got {[m.id for m in listed]}")
        expect(isinstance(listed[0].id, str) and listed[0].id, "the model has no id")
        self.model = listed[0].id
        one = self.client.models.retrieve(self.model)
        expect(one.id == self.model, f"GET /v1/models/{self.model} answered id {one.id!r}")

    def chat(self) -> None:
        messages = [{"role": "system", "content": "You are a terse assistant."},
                    {"role": "user", "content": "Name three prime numbers."}]
        plain = self.client.chat.completions.create(model=self.model, messages=messages, max_tokens=16,
                                                    temperature=0)
        expect(len(plain.choices) == 1, f"{len(plain.choices)} choices")
        choice = plain.choices[0]
        expect(choice.message.role == "assistant", f"role {choice.message.role!r}")
        text = choice.message.content
        expect(isinstance(text, str) and text, f"empty content {text!r}")
        expect(choice.finish_reason in ("stop", "length"), f"finish_reason {choice.finish_reason!r}")
        u = plain.usage
        expect(u is not None and u.prompt_tokens > 0 and 0 < u.completion_tokens <= 16
               and u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage {u}")
        if choice.finish_reason == "length":
            expect(u.completion_tokens == 16, f"finish_reason length after {u.completion_tokens} of 16 tokens")

        pieces, finish, usage = [], None, None
        stream = self.client.chat.completions.create(model=self.model, messages=messages, max_tokens=16,
                                                     temperature=0, stream=True,
                                                     stream_options={"include_usage": True})
        for ev in stream:
            if ev.usage is not None:
                usage = ev.usage
            for c in ev.choices:
                if c.delta.content:
                    pieces.append(c.delta.content)
                if c.finish_reason:
                    finish = c.finish_reason
        streamed = "".join(pieces)
        expect(streamed == text, f"streamed text {streamed!r} differs from the non-streamed {text!r} at temperature 0")
        expect(finish == choice.finish_reason, f"streamed finish_reason {finish!r} vs {choice.finish_reason!r}")
        expect(usage is not None, "no usage chunk with stream_options.include_usage")
        expect(usage.completion_tokens == u.completion_tokens and usage.prompt_tokens == u.prompt_tokens,
               f"streamed usage {usage} vs {u}")

    def completion_string(self) -> None:
        r = self.client.completions.create(model=self.model, prompt="def fibonacci(n):", max_tokens=12,
                                           temperature=0)
        expect(len(r.choices) == 1 and isinstance(r.choices[0].text, str) and r.choices[0].text,
               f"choices {r.choices}")
        expect(r.choices[0].finish_reason in ("stop", "length"), f"finish_reason {r.choices[0].finish_reason!r}")
        expect(r.usage is not None and r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 12,
               f"usage {r.usage}")
        again = self.client.completions.create(model=self.model, prompt="def fibonacci(n):", max_tokens=12,
                                               temperature=0, stream=True)
        streamed = "".join(c.choices[0].text for c in again if c.choices)
        expect(streamed == r.choices[0].text, f"streamed {streamed!r} vs plain {r.choices[0].text!r}")

    def completion_ids(self) -> None:
        # Ids below 256 exist in every vocabulary; they are fed as they are (no BOS added).
        ids = [40, 41, 42, 43, 44, 45, 46, 47]
        r = self.client.completions.create(model=self.model, prompt=ids, max_tokens=8, temperature=0)
        expect(len(r.choices) == 1 and isinstance(r.choices[0].text, str), f"choices {r.choices}")
        expect(r.usage is not None and r.usage.prompt_tokens == len(ids),
               f"usage.prompt_tokens {r.usage and r.usage.prompt_tokens}, expected {len(ids)} (ids fed as they are)")
        expect(0 < r.usage.completion_tokens <= 8, f"usage {r.usage}")

    def embeddings(self) -> None:
        inputs = ["The cat sat on the mat.", "Quantum chromodynamics", "The cat sat on the mat."]
        for fmt in ("float", None):
            kwargs = {"encoding_format": fmt} if fmt else {}
            r = self.client.embeddings.create(model=self.model, input=inputs, **kwargs)
            what = f"encoding_format={fmt or 'default'}"
            expect(len(r.data) == len(inputs), f"{what}: {len(r.data)} vectors for {len(inputs)} inputs")
            expect([d.index for d in r.data] == list(range(len(inputs))), f"{what}: indexes {[d.index for d in r.data]}")
            vecs = [d.embedding for d in r.data]
            dims = {len(v) for v in vecs}
            expect(len(dims) == 1 and dims.pop() > 0, f"{what}: vector lengths {[len(v) for v in vecs]}")
            for i, v in enumerate(vecs):
                expect(all(math.isfinite(x) for x in v), f"{what}: vector {i} has non-finite values")
                norm = math.sqrt(sum(x * x for x in v))
                expect(abs(norm - 1.0) < 1e-3, f"{what}: vector {i} has norm {norm:.6f}, expected 1")
            cos = [sum(a * b for a, b in zip(vecs[0], v)) for v in vecs]
            expect(abs(cos[2] - 1.0) < 1e-4, f"{what}: equal inputs give cosine {cos[2]:.6f}")
            expect(cos[1] < 0.9999, f"{what}: different inputs give the same vector (cosine {cos[1]:.6f})")
        single = self.client.embeddings.create(model=self.model, input="one string", encoding_format="float")
        expect(len(single.data) == 1, f"a single string gave {len(single.data)} vectors")

    def metrics(self) -> None:
        r = self.http.get("/metrics")
        expect(r.status_code == 200, f"/metrics: HTTP {r.status_code}")
        missing = [n for n in METRIC_NAMES if n not in r.text]
        expect(not missing, f"/metrics lacks {missing}")

    def malformed_json(self) -> None:
        r = self.http.post("/v1/chat/completions", content=b'{"model": "x", "messages": [',
                           headers={"Content-Type": "application/json"})
        expect_error_shape(r, 400, "malformed JSON")

    def bad_field(self) -> None:
        r = self.http.post("/v1/chat/completions", json={"model": self.model, "messages": "not a list"})
        expect_error_shape(r, 400, "'messages' as a string")
        r = self.http.post("/v1/completions", json={"model": self.model, "prompt": "hi", "max_tokens": "ten"})
        expect_error_shape(r, 400, "'max_tokens' as a string")

    def unknown_route(self) -> None:
        expect_error_shape(self.http.get("/v1/no-such-route"), 404, "GET /v1/no-such-route")
        expect_error_shape(self.http.post("/v1/no-such-route", json={}), 404, "POST /v1/no-such-route")

    def unknown_model(self) -> None:
        try:
            self.client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=4)
        except openai.NotFoundError as e:
            expect_error_shape(e.response, 404, "unknown model")
            return
        raise CheckFailed("an unknown model name was accepted")

    def unknown_model_card(self) -> None:
        expect_error_shape(self.http.get("/v1/models/no-such-model"), 404, "GET /v1/models/no-such-model")

    def auth(self) -> None:
        for key in (None, "wrong-" + (self.api_key or "")):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            r = httpx.post(self.root + "/v1/completions", headers=headers, timeout=10,
                           json={"model": self.model, "prompt": "hi", "max_tokens": 1})
            expect_error_shape(r, 401, "no key" if key is None else "a wrong key")
        anonymous = openai.OpenAI(base_url=self.root + "/v1", api_key="wrong", max_retries=0)
        try:
            anonymous.models.list()
        except openai.AuthenticationError:
            return
        raise CheckFailed("the openai client with a wrong key was let in")


def main() -> int:
    p = argparse.ArgumentParser(description="Check a running deepedge serve with the official openai client.")
    p.add_argument("url", help="the server's base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--api-key", default=None, help="the server's key (also checks that 401s come without it)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    args = p.parse_args()

    t = ClientTest(args.url, args.api_key, args.timeout)
    t.run("GET /health is 200 without a key", t.health)
    t.run("GET /v1/models lists one model, GET /v1/models/{id} returns it", t.models)
    if not t.model:
        print("FAIL: no model id; the remaining checks need one")
        return 1
    t.run("chat completion, plain and streamed", t.chat)
    t.run("completion with a string prompt", t.completion_string)
    t.run("completion with token ids", t.completion_ids)
    t.run("embeddings: one unit vector per input", t.embeddings)
    t.run("GET /metrics has every metric", t.metrics)
    t.run("400 for malformed JSON", t.malformed_json)
    t.run("400 for a bad field", t.bad_field)
    t.run("404 for an unknown route", t.unknown_route)
    t.run("404 for an unknown model", t.unknown_model)
    t.run("404 for GET /v1/models/<unknown>", t.unknown_model_card)
    if args.api_key:
        t.run("401 without or with a wrong key", t.auth)
    else:
        print("note  401 checks not run: the server was given no key here (pass --api-key to run them)")
    failed = [(n, e) for n, e in t.results if e]
    print(f"{len(t.results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
