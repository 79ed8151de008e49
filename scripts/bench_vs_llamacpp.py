#!/usr/bin/env python3
"""Speed and memory of deepedge beside llama.cpp, measured in the same run, reported as ratios.

For each model: `deepedge bench --json` and `tests/reference/bench_llamacpp.mjs` (llama.cpp's prebuilt CPU
build from node-llama-cpp) with the same prompt length, generation length, repetitions, threads and context,
alternating the two so that machine noise hits both. Prints a Markdown table (and `--json` a JSON object).

Every ratio is deepedge over llama.cpp: for speeds higher is better, for load time and memory lower is
better. llama.cpp's peak RSS is reported minus
the Node.js process's own baseline (measured before the model is loaded), which is the stricter comparison
for deepedge.

`--models moe` is a synthetic Mixture-of-Experts model (qwen2moe layout, 14 layers × 64 experts of Q4_0,
~3.4 GB, random weights), written once into the cache by `runtime/examples/make_synthetic_moe.rs`; for it
the table adds page faults while decoding. `--cold` evicts the model file from the page cache before every
run (posix_fadvise DONTNEED), so the weights come from disk as on a device that has not opened the model
yet.

Usage: scripts/bench_vs_llamacpp.py [--models qwen,gemma,moe] [-p 128] [-n 64] [-r 3] [-t 2] [--ctx 4096]
                                    [--rounds 2] [--cold] [--deepedge target/release/deepedge] [--json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = {
    "qwen": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    "gemma": "gemma-3-270m-q4_k_m.gguf",
    "moe": "synthetic-moe-q4_0.gguf",
}
SYNTHETIC = {"moe"}


def make_synthetic(path):
    """Writes the synthetic MoE model (cargo builds the generator on first use)."""
    print(f"writing {path} (once)", file=sys.stderr)
    subprocess.run(["cargo", "run", "--release", "--quiet", "-p", "deepedge", "--example", "make_synthetic_moe",
                    "--", str(path)], check=True, cwd=ROOT)


def evict(path):
    """Drops the file's pages from the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def dig(row, keys):
    for k in keys:
        row = row[k]
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="qwen")
    ap.add_argument("-p", type=int, default=128)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("-r", type=int, default=3)
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of (deepedge, llama.cpp)")
    ap.add_argument("--cold", action="store_true", help="evict the model from the page cache before each run")
    ap.add_argument("--deepedge", default=str(ROOT / "target/release/deepedge"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    cache = Path(os.environ.get("DEEPEDGE_CACHE", Path.home() / ".cache/deepedge"))
    subprocess.run([str(ROOT / "tests/reference/setup.sh")], check=True)
    results = {}
    for key in args.models.split(","):
        model = cache / "models" / MODELS[key]
        if not model.exists() and key in SYNTHETIC:
            model.parent.mkdir(parents=True, exist_ok=True)
            make_synthetic(model)
        if not model.exists():
            sys.exit(f"{model} missing: run scripts/fetch-models.sh")
        ours, theirs = [], []
        for _ in range(args.rounds):
            if args.cold:
                evict(model)
            ours.append(run_json([args.deepedge, "bench", "-m", str(model), "-p", str(args.p), "-n", str(args.n),
                                  "-r", str(args.r), "-t", str(args.t), "--ctx", str(args.ctx), "--json"]))
            if args.cold:
                evict(model)
            theirs.append(run_json(["node", str(ROOT / "tests/reference/bench_llamacpp.mjs"), "-m", str(model),
                                    "-p", str(args.p), "-n", str(args.n), "-r", str(args.r),
                                    "--threads", str(args.t), "--ctx", str(args.ctx)]))
        med = lambda rows, *keys: statistics.median(dig(r, keys) for r in rows)
        o = {k: med(ours, k) for k in ("pp_tps", "tg_tps", "load_s", "peak_rss_mib")}
        t = {k: med(theirs, k) for k in ("pp_tps", "tg_tps", "load_s", "peak_rss_mib")}
        t["baseline_rss_mib"] = med(theirs, "baseline_rss_mib")
        for side, rows in ((o, ours), (t, theirs)):
            side["decode_major_faults"] = med(rows, "page_faults", "decode_major")
            side["decode_minor_faults"] = med(rows, "page_faults", "decode_minor")
        t["model_rss_mib"] = t["peak_rss_mib"] - t["baseline_rss_mib"]
        results[key] = {
            "deepedge": o,
            "llama_cpp": t,
            "ratios": {
                "decode": o["tg_tps"] / t["tg_tps"],
                "pp": o["pp_tps"] / t["pp_tps"],
                "peak_rss": o["peak_rss_mib"] / t["model_rss_mib"],
                "load": o["load_s"] / t["load_s"],
            },
            "settings": {"p": args.p, "n": args.n, "r": args.r, "threads": args.t, "ctx": args.ctx,
                         "rounds": args.rounds, "cold": args.cold},
        }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"| model | metric | deepedge | llama.cpp | ratio | target |")
    print(f"|---|---|---|---|---|---|")
    for key, r in results.items():
        o, t, q = r["deepedge"], r["llama_cpp"], r["ratios"]
        print(f"| {key} | decode tg{args.n} (tok/s) | {o['tg_tps']:.1f} | {t['tg_tps']:.1f} | {q['decode']:.2f}× | ≥ 0.9× |")
        print(f"| {key} | prompt pp{args.p} (tok/s) | {o['pp_tps']:.1f} | {t['pp_tps']:.1f} | {q['pp']:.2f}× | ≥ 0.5× |")
        print(f"| {key} | peak RSS (MiB) | {o['peak_rss_mib']:.0f} | {t['model_rss_mib']:.0f} | {q['peak_rss']:.2f}× | ≤ 1.15× |")
        print(f"| {key} | load (s) | {o['load_s']:.3f} | {t['load_s']:.3f} | {q['load']:.2f}× | ≤ 1.0× |")
        if key in SYNTHETIC:
            print(f"| {key} | page faults while decoding, major / minor | {o['decode_major_faults']:.0f} / "
                  f"{o['decode_minor_faults']:.0f} | {t['decode_major_faults']:.0f} / {t['decode_minor_faults']:.0f} | | |")


if __name__ == "__main__":
    main()
