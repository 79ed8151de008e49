#!/usr/bin/env node
// Benchmark llama.cpp (prebuilt CPU build shipped in node-llama-cpp) the way llama-bench does:
//   load   : loadModel + createContext + getSequence, seconds
//   pp<P>  : P prompt tokens evaluated in ONE batch on a fresh (empty) context, tokens/s
//   tg<N>  : N single-token greedy decode steps on a fresh (empty) context, tokens/s
// Each repetition reloads the model; the reported value is the median over repetitions.
// Peak RSS is VmHWM of this process at the end; baseline is VmRSS after the native library is
// loaded but before any model is loaded (node + addon overhead, to subtract if wanted). Page faults are
// the process's (process.resourceUsage()), in all and while decoding.
//
// Usage: node bench_llamacpp.mjs -m MODEL [-p 128] [-n 64] [-r 3] [--threads 2] [--ctx 4096]
//                                [--batch 512] [--swa-full] [--no-mmap]
// MODEL is a path, or a file name / model key under $DEEPEDGE_CACHE/models/.
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {MODELS, modelsDir, loadLlama, versionInfo, tokenizeDefault, procStatusMiB, round} from "./common.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const nodeStartRss = procStatusMiB("VmRSS");

function usage(code) {
    console.error("usage: node bench_llamacpp.mjs -m MODEL [-p 128] [-n 64] [-r 3] [--threads 2] [--ctx 4096] [--batch 512] [--swa-full] [--no-mmap]");
    process.exit(code);
}

function parseArgs(argv) {
    const a = {model: null, pp: 128, tg: 64, reps: 3, threads: 2, ctx: 4096, batch: 512, swaFull: false, mmap: true};
    const num = (v, name) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0) throw new Error(`bad value for ${name}: ${v}`);
        return n;
    };
    for (let i = 0; i < argv.length; i++) {
        const k = argv[i];
        if (k === "-m" || k === "--model") a.model = argv[++i];
        else if (k === "-p" || k === "--pp") a.pp = num(argv[++i], k);
        else if (k === "-n" || k === "--tg") a.tg = num(argv[++i], k);
        else if (k === "-r" || k === "--reps") a.reps = num(argv[++i], k);
        else if (k === "-t" || k === "--threads") a.threads = num(argv[++i], k);
        else if (k === "-c" || k === "--ctx") a.ctx = num(argv[++i], k);
        else if (k === "-b" || k === "--batch") a.batch = num(argv[++i], k);
        else if (k === "--swa-full") a.swaFull = true;
        else if (k === "--no-mmap") a.mmap = false;
        else if (k === "-h" || k === "--help") usage(0);
        else throw new Error("unknown argument: " + k);
    }
    if (!a.model) usage(2);
    if (a.reps < 1) a.reps = 1;
    if (a.batch < a.pp) a.batch = a.pp; // pp must be a single batch
    if (a.ctx < a.pp + 1 || a.ctx < a.tg + 1) throw new Error("--ctx too small for -p/-n");
    return a;
}

function resolveModel(m) {
    if (fs.existsSync(m)) return path.resolve(m);
    const file = MODELS[m] ?? m;
    const p = path.join(modelsDir(), file);
    if (fs.existsSync(p)) return p;
    throw new Error(`model not found: ${m} (looked in ${modelsDir()})`);
}

function median(xs) {
    const s = [...xs].sort((a, b) => a - b);
    const mid = Math.floor(s.length / 2);
    return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** P prompt tokens: real text (GPL-3 fixture), repeated if needed; BOS first when the model adds one. */
function promptTokens(model, n) {
    const text = fs.readFileSync(path.join(HERE, "fixtures", "gpl-3.txt"), "utf8");
    let {ids} = tokenizeDefault(model, text, false);
    if (ids.length === 0) throw new Error("the model's vocabulary tokenizes the prompt text to nothing");
    while (ids.length < n) ids = ids.concat(ids);
    return ids.slice(0, n);
}

async function main() {
    const args = parseArgs(process.argv.slice(2));
    const modelPath = resolveModel(args.model);
    const llama = await loadLlama(args.threads);
    const baselineRss = procStatusMiB("VmRSS");
    const runs = {load_s: [], pp_tps: [], tg_tps: []};
    let batchSize = null, ctxSize = null, threadsUsed = null, flashAttention = null;
    const decodeFaults = {minor: 0, major: 0};

    for (let r = 0; r < args.reps; r++) {
        const t0 = performance.now();
        const model = await llama.loadModel({modelPath, useMmap: args.mmap});
        const context = await model.createContext({
            contextSize: args.ctx, batchSize: args.batch, threads: args.threads,
            swaFullCache: args.swaFull, sequences: 1, failedCreationRemedy: false
        });
        const sequence = context.getSequence();
        runs.load_s.push((performance.now() - t0) / 1000);
        batchSize = context.batchSize;
        ctxSize = context.contextSize;
        threadsUsed = context.idealThreads;
        flashAttention = context.flashAttention;

        const tokens = promptTokens(model, Math.max(args.pp, 8));
        // warm-up (not timed), like llama-bench
        await sequence.evaluateWithoutGeneratingNewTokens(tokens.slice(0, 8));
        await sequence.clearHistory();

        if (args.pp > 0) {
            const t1 = performance.now();
            await sequence.evaluateWithoutGeneratingNewTokens(tokens.slice(0, args.pp));
            runs.pp_tps.push(args.pp / ((performance.now() - t1) / 1000));
            await sequence.clearHistory();
        }

        if (args.tg > 0) {
            // N decode steps of one token each; greedy (llama.cpp greedy sampler), fed back
            // regardless of EOS so that exactly N steps run.
            const greedy = {generateNext: {token: true, options: {temperature: 0}}};
            let input = [[tokens[0], greedy]];
            const faultsBefore = process.resourceUsage();
            const t2 = performance.now();
            for (let i = 0; i < args.tg; i++) {
                const res = await sequence.controlledEvaluate(input);
                input = [[res[0].next.token, greedy]];
            }
            runs.tg_tps.push(args.tg / ((performance.now() - t2) / 1000));
            const faultsAfter = process.resourceUsage();
            decodeFaults.minor += faultsAfter.minorPageFault - faultsBefore.minorPageFault;
            decodeFaults.major += faultsAfter.majorPageFault - faultsBefore.majorPageFault;
        }

        await sequence.dispose();
        await context.dispose();
        await model.dispose();
    }

    const result = {
        model: path.basename(modelPath),
        threads: args.threads,
        threads_used: threadsUsed,
        ctx: ctxSize,
        batch: batchSize,
        ubatch: batchSize, // node-llama-cpp sets n_ubatch = n_batch
        flash_attention: flashAttention,
        swa_full: args.swaFull,
        mmap: args.mmap,
        pp: args.pp,
        tg: args.tg,
        reps: args.reps,
        pp_tps: args.pp > 0 ? round(median(runs.pp_tps), 2) : null,
        tg_tps: args.tg > 0 ? round(median(runs.tg_tps), 2) : null,
        load_s: round(median(runs.load_s), 4),
        // best of the repetitions: more robust than the median on a shared / noisy machine
        pp_tps_max: args.pp > 0 ? round(Math.max(...runs.pp_tps), 2) : null,
        tg_tps_max: args.tg > 0 ? round(Math.max(...runs.tg_tps), 2) : null,
        peak_rss_mib: round(procStatusMiB("VmHWM"), 1),
        baseline_rss_mib: round(baselineRss, 1),
        node_start_rss_mib: round(nodeStartRss, 1),
        // Page faults of the whole process (minor: served from memory; major: read from disk), and those
        // taken while decoding.
        page_faults: {
            minor: process.resourceUsage().minorPageFault, major: process.resourceUsage().majorPageFault,
            decode_minor: decodeFaults.minor, decode_major: decodeFaults.major
        },
        runs: {
            load_s: runs.load_s.map((x) => round(x, 4)),
            pp_tps: runs.pp_tps.map((x) => round(x, 2)),
            tg_tps: runs.tg_tps.map((x) => round(x, 2))
        },
        llama_cpp: versionInfo(llama)
    };
    await llama.dispose();
    console.log(JSON.stringify(result));
}

await main();
