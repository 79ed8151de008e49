#!/usr/bin/env python3
"""Tests the two serve scripts (serve_client_test.py, loadtest_serve.py) against the test double
scripts/fake_openai_server.py: they must pass against the well-behaved fake and fail, naming the problem,
against each of its injected faults. This checks the scripts, not deepedge: the real server is checked by
running the same scripts against `deepedge serve` (docs/serve.md).

    .venv-serve/bin/python scripts/selftest_serve_scripts.py [--jobs 4]

Run it with the interpreter of the venv that has scripts/serve-requirements.txt installed (the scripts under
test are started with the same interpreter). Exits 1 when any case does not turn out as expected.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
FAKE = SCRIPTS / "fake_openai_server.py"
CLIENT = SCRIPTS / "serve_client_test.py"
LOADTEST = SCRIPTS / "loadtest_serve.py"
KEY = "selftest-key"
# Smaller than the defaults so the whole self-test takes a couple of minutes; the mix is the same.
SMALL_LOAD = ["--requests", "120", "--clients", "32", "--batch-tokens", "24", "--prefix-trials", "2",
              "--rss-settle-s", "3"]


@dataclass
class Case:
    name: str
    script: Path
    fault: str = "none"
    script_args: tuple[str, ...] = ()
    fake_args: tuple[str, ...] = ()
    expect_pass: bool = False
    expect_text: str = ""  # a FAIL line of the script's output must mention this


CASES = [
    Case("client test passes", CLIENT, script_args=("--api-key", KEY), fake_args=("--api-key", KEY),
         expect_pass=True),
    Case("load test passes (all phases)", LOADTEST, script_args=tuple(SMALL_LOAD), expect_pass=True),
    Case("load test passes with a key", LOADTEST, script_args=("--api-key", KEY, "--phases", "prefix",
                                                               "--prefix-trials", "1"),
         fake_args=("--api-key", KEY), expect_pass=True),
    Case("client test: /health 503 while loading", CLIENT, fake_args=("--load-delay", "60"),
         expect_text="GET /health"),
    Case("client test: wrong key not accepted", CLIENT, script_args=("--api-key", "not-the-key"),
         fake_args=("--api-key", KEY), expect_text="FAIL"),
    Case("client test: 5xx for a bad field", CLIENT, "5xx-on-bad-field", expect_text="HTTP 500, expected 400"),
    Case("client test: plain-text errors", CLIENT, "plain-text-errors", expect_text="not JSON"),
    Case("client test: unnormalized embeddings", CLIENT, "unnormalized-embeddings", expect_text="expected 1"),
    Case("load test: batching changes greedy output", LOADTEST, "batch-divergence",
         ("--phases", "batching", "--batch-tokens", "24"), expect_text="greedy outputs change when batched"),
    Case("load test: batching does not pay", LOADTEST, script_args=("--phases", "batching", "--batch-tokens", "24"),
         fake_args=("--parallel", "1"), expect_text="aggregate decode rate"),
    Case("load test: memory leak", LOADTEST, "leak", ("--phases", "load", *SMALL_LOAD), expect_text="RSS"),
    Case("load test: 5xx for a bad field", LOADTEST, "5xx-on-bad-field", ("--phases", "load", *SMALL_LOAD),
         expect_text="HTTP 500"),
    Case("load test: plain-text errors", LOADTEST, "plain-text-errors", ("--phases", "load", *SMALL_LOAD),
         expect_text="not an OpenAI error"),
    Case("load test: stream without [DONE]", LOADTEST, "no-done", ("--phases", "load", *SMALL_LOAD),
         expect_text="data: [DONE]"),
    Case("load test: metrics miscount", LOADTEST, "miscount-metrics", ("--phases", "load", *SMALL_LOAD),
         expect_text="complete requests: deepedge_generated_tokens_total"),
    Case("load test: queue too small gives 429", LOADTEST, script_args=("--phases", "load", *SMALL_LOAD),
         fake_args=("--queue", "4"), expect_text="HTTP 429"),
    Case("load test: no prefix cache", LOADTEST, "no-prefix-cache", ("--phases", "prefix", "--prefix-trials", "2"),
         expect_text="second request's TTFT"),
]


def start_fake(case: Case) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(FAKE), "--port", "0", "--fault", case.fault, *case.fake_args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if "http://" not in line:
        proc.kill()
        raise RuntimeError(f"the fake server did not start: {line!r}")
    return proc, line[line.index("http://"):]


def run_case(case: Case, timeout: float) -> tuple[bool, str]:
    """(as expected, a one-line account)."""
    fake, url = start_fake(case)
    try:
        cmd = [sys.executable, str(case.script), url, *case.script_args]
        if case.script == LOADTEST:
            cmd += ["--server-pid", str(fake.pid)]
        t0 = time.monotonic()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False, f"timed out after {timeout:.0f} s"
        took = time.monotonic() - t0
        output = done.stdout + done.stderr
        if case.expect_pass:
            if done.returncode == 0:
                return True, f"passed as expected ({took:.0f} s)"
            return False, f"expected to pass, exited {done.returncode}:\n{output[-3000:]}"
        if done.returncode == 0:
            return False, f"expected to fail (fault {case.fault!r}), but passed:\n{output[-2000:]}"
        if "Traceback" in done.stderr and case.script == LOADTEST:
            return False, f"failed by crashing, not by a check:\n{done.stderr[-2000:]}"
        first = next((ln for ln in output.splitlines() if "FAIL" in ln and case.expect_text in ln), "")
        if not first:
            return False, f"failed, but no FAIL line mentions {case.expect_text!r}:\n{output[-2000:]}"
        return True, f"failed as expected ({took:.0f} s): {first.strip()[:160]}"
    finally:
        fake.kill()
        fake.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1) * 2,
                   help="cases run at once (the fake mostly sleeps)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per case")
    p.add_argument("--only", help="run only the cases whose name contains this")
    args = p.parse_args()
    cases = [c for c in CASES if not args.only or args.only in c.name]
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_case, c, args.timeout): c for c in cases}
        for fut in concurrent.futures.as_completed(futures):
            case = futures[fut]
            try:
                ok, account = fut.result()
            except Exception as e:  # noqa: BLE001 - a case that cannot even run is a failed case
                ok, account = False, f"{type(e).__name__}: {e}"
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'}  {case.name}: {account}", flush=True)
    print(f"{len(cases) - failed} of {len(cases)} cases as expected")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
