#!/usr/bin/env node
// llama.cpp's output for the tiny MoE / DeepSeek fixtures (tests/tiny/make_tiny_moe_models.py).
//
// For every fixture and every GGUF copy (F32 and Q8_0) this evaluates the recorded id sequences with the
// prebuilt llama.cpp of node-llama-cpp and records, at every position, llama.cpp's log-probabilities over
// the whole vocabulary (its softmax with temperature 1 and no truncation, so log p = logit − logsumexp),
// plus its greedy continuation of the first sequence. runtime/tests/tiny_moe.rs compares deepedge's
// Q8_0 results against these (argmax agreement and log-softmax differences).
//
// llama.cpp runs with an f32 KV cache and without flash attention, so that attention is computed in f32
// as in deepedge's test (its default f16 cache and flash attention round queries and attention weights to
// f16; the Q8_0 rounding of the activations downstream turns such small differences into ~0.1 in the
// log-probabilities of these random-weight models, which would hide what the comparison is for).
//
// Usage: node tiny_moe_llamacpp.mjs [--only NAME]   (writes tests/tiny/<name>.llamacpp.json)
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {loadLlama, versionInfo, round} from "./common.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const TINY = path.join(HERE, "..", "tiny");
const NAMES = ["deepseek-v3", "deepseek-v2", "qwen2moe", "qwen3moe", "mixtral"];
const FULL = {temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1};

function parseArgs(argv) {
    const args = {only: null};
    for (let i = 0; i < argv.length; i++) {
        if (argv[i] === "--only") args.only = argv[++i];
        else throw new Error("unknown argument: " + argv[i]);
    }
    return args;
}

/** Log-probabilities of every vocabulary entry, in id order, from node-llama-cpp's probability map. */
function logProbs(map, nVocab) {
    const row = new Array(nVocab).fill(null);
    for (const [id, p] of map) row[id] = Math.log(p);
    if (row.some((v) => v === null)) throw new Error("probability map does not cover the vocabulary");
    return row;
}

async function evaluate(context, ids, nVocab) {
    const sequence = context.getSequence();
    const input = ids.map((t) => [t, {generateNext: {probabilities: true, options: FULL}}]);
    const res = await sequence.controlledEvaluate(input);
    await sequence.dispose();
    return res.map((r) => logProbs(r.next.probabilities, nVocab));
}

async function greedy(context, ids, n) {
    const sequence = context.getSequence();
    const out = [];
    let input = ids.map((t, i) => i === ids.length - 1 ? [t, {generateNext: {token: true, options: {temperature: 0}}}] : t);
    for (let i = 0; i < n; i++) {
        const res = await sequence.controlledEvaluate(input);
        const tok = res[input.length - 1].next.token;
        out.push(tok);
        input = [[tok, {generateNext: {token: true, options: {temperature: 0}}}]];
    }
    await sequence.dispose();
    return out;
}

const args = parseArgs(process.argv.slice(2));
const llama = await loadLlama(2);
for (const name of NAMES) {
    if (args.only && args.only !== name) continue;
    const fx = JSON.parse(fs.readFileSync(path.join(TINY, name + ".json"), "utf8"));
    const out = {name, versions: versionInfo(llama), files: {}};
    for (const [wtype, file] of Object.entries(fx.gguf)) {
        const model = await llama.loadModel({modelPath: path.join(TINY, file), gpuLayers: 0});
        const context = await model.createContext({
            contextSize: 64, batchSize: 64, sequences: 1, threads: 2, flashAttention: false,
            experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32"
        });
        const cases = [];
        for (const c of fx.cases) {
            const rows = await evaluate(context, c.ids, fx.n_vocab);
            const entry = {log_probs: rows.map((r) => r.map((v) => round(v, 5)))};
            if (c.greedy) entry.greedy = await greedy(context, c.ids, c.greedy.tokens.length);
            cases.push(entry);
        }
        out.files[wtype] = {file, cases};
        await context.dispose();
        await model.dispose();
        console.log(`${name} ${wtype}: ok`);
    }
    fs.writeFileSync(path.join(TINY, name + ".llamacpp.json"), JSON.stringify(out) + "\n");
}
