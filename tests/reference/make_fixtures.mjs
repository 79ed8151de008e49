#!/usr/bin/env node
// Generate llama.cpp reference fixtures (tokenization, greedy decoding with top-2 margins, perplexity)
// for deepedge, using the prebuilt llama.cpp shipped in the npm package node-llama-cpp.
//
// Usage: node make_fixtures.mjs [--only MODEL_KEY] [--skip-ppl] [--ppl-chunks N] [--verify-greedy] [--out DIR]
// Models are read from $DEEPEDGE_CACHE/models/ (default ~/.cache/deepedge/models/).
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {MODELS, modelsDir, loadLlama, versionInfo, tokenizeDefault, top2, round} from "./common.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const THREADS = 2;
const GREEDY_CTX = 1024; // fixed context size for greedy fixtures
const GREEDY_TOKENS = 32;
const PPL_CTX = 256;
const PPL_TEXT = path.join(HERE, "fixtures", "gpl-3.txt");

function parseArgs(argv) {
    const args = {only: null, skipPpl: false, pplChunks: -1, verifyGreedy: false, out: path.join(HERE, "fixtures")};
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === "--only") args.only = argv[++i];
        else if (a === "--skip-ppl") args.skipPpl = true;
        else if (a === "--verify-greedy") args.verifyGreedy = true;
        else if (a === "--ppl-chunks") args.pplChunks = Number(argv[++i]);
        else if (a === "--out") args.out = argv[++i];
        else if (a === "-h" || a === "--help") {
            console.log("node make_fixtures.mjs [--only MODEL_KEY] [--skip-ppl] [--ppl-chunks N] [--verify-greedy] [--out DIR]");
            process.exit(0);
        } else throw new Error("unknown argument: " + a);
    }
    return args;
}

// ---------------------------------------------------------------------------------------------
// Tokenization texts: tricky inputs for BPE (Qwen2) and SentencePiece (Gemma 3) tokenizers.
const TOKENIZE_TEXTS = [
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "",
    " ",
    "  ",
    "   leading spaces",
    "trailing spaces   ",
    " both ",
    "\n",
    "\n\n\n",
    "\t",
    "\t\tindented\n\tline",
    " \n \t mixed \r\n whitespace  \n\n  end",
    "line1\r\nline2\r\n",
    "word    word\t\tword\n\n\nword",
    "你好，世界！今天天气很好。",
    "日本語のテキスト、カタカナとひらがな。東京",
    "안녕하세요 세계, 한국어 문장입니다.",
    "Emoji: 😀😃🎉👍",
    "ZWJ: 👨‍👩‍👧‍👦 and 🏳️‍🌈 and 🧑🏽‍💻",
    "Flags: 🇺🇸🇯🇵🇩🇪",
    "Skin tone: 👋🏽👋🏿",
    "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n    return a + b\n\nprint(add(1, 2))\n",
    "    def f(self):\n        return None\n",
    "fn main() {\n    let v: Vec<u32> = vec![1, 2, 3];\n    println!(\"{:?}\", v.iter().map(|x| x * 2).collect::<Vec<_>>());\n}\n",
    "{\"a\": {\"b\": [1, 2, {\"c\": null}]}, \"d\": \"e\\\"f\", \"g\": {}}",
    "1234567890123",
    "3.14159 2.71828 -0.001 1e-10 +42",
    "ID: 000123, 1,000,000 and 2024-01-31T12:34:56Z",
    "don't I'll we're they've it's CAN'T",
    "https://example.com/path/to/page?query=1&b=two#frag",
    "<|im_start|>user\nhi<|im_end|>",
    "<start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n",
    "<bos>",
    "</s>",
    "<|endoftext|>",
    "Café naïve résumé façade Ångström",
    "Ünïcödé ßtraße Œuvre",
    "مرحبا بالعالم",
    "שלום עולם",
    "Mixed: English, русский, ελληνικά, 中文, العربية, עברית",
    "e\u0301 a\u0300 n\u0303 combining: Z\u0351\u036b\u0343\u036a",
    "\ufb01 ligature and full-width \uff21\uff22\uff23\uff11\uff12\uff13",
    "Zero-width: a\u200bb\u200cc\u200dd\ufeffe",
    "\u00a0non-breaking\u00a0space",
    "math: ∑_{i=1}^{n} x_i² ≤ ∞",
    "HTML: <div class=\"x\">&amp;</div>",
    "CamelCaseIdentifier snake_case_identifier SCREAMING_CASE",
    "!!!???...,,,;;;",
    "Thai: สวัสดีครับ Hindi: नमस्ते दुनिया",
    "a".repeat(50)
];

// ---------------------------------------------------------------------------------------------
// Greedy prompts. `parse_special: true` only for chat-templated prompts (special tokens of the
// template are meant as control tokens there); every other prompt is tokenized like a plain prompt.
const GPL_HEAD = fs.readFileSync(PPL_TEXT, "utf8").slice(0, 2600); // > 512 tokens: exercises Gemma's SWA window

function greedyPrompts(key) {
    const prompts = [
        {name: "prose", text: "The history of the printing press begins in"},
        {name: "python", text: "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"},
        {name: "rust", text: "fn main() {\n    let v = vec![1, 2, 3];\n"},
        {name: "bullets", text: "Shopping list:\n- apples\n- bread\n-"},
        {name: "chinese", text: "人工智能是"},
        {name: "arithmetic", text: "Q: What is 12 * 7?\nA:"},
        {name: "math", text: "The derivative of x^2 + 3x is"},
        {name: "json", text: "{\"name\": \"Alice\", \"age\": 30, \"skills\": ["},
        {name: "story", text: "Once upon a time, in a small village by the sea,"},
        {name: "question", text: "What is the capital of France?"},
        {name: "counting", text: "1, 2, 3, 4, 5,"}
    ];
    if (key.startsWith("qwen"))
        prompts.push({
            name: "chat",
            parse_special: true,
            text: "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
                "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n"
        });
    else
        prompts.push({
            name: "chat",
            parse_special: true,
            text: "<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n"
        });
    prompts.push({name: "long_gpl_head", text: GPL_HEAD});
    return prompts;
}

// ---------------------------------------------------------------------------------------------
function makeTokenize(model) {
    return TOKENIZE_TEXTS.map((text) => {
        const plain = tokenizeDefault(model, text, false);
        const special = tokenizeDefault(model, text, true);
        return {
            text,
            add_bos: plain.add_bos,
            ids: plain.ids,
            ids_parse_special: special.ids,
            detok: model.detokenize(plain.ids, false)
        };
    });
}

// Greedy decoding with the top-2 margin at every step.
// A full-vocabulary probability map per step is slow in node-llama-cpp (the addon copies the whole
// vocabulary into JS), so each step samples with top-k = 2 (then temperature 1, top-p 1, min-p 0):
// the returned "probabilities" are the softmax over the two highest logits, sorted by logit, so
// entry 0 is the argmax (= llama.cpp's greedy pick) and log(p1/p2) = logit1 - logit2 exactly.
// The token chosen by the sampler's random draw is ignored; we feed the argmax back ourselves.
// (`--verify-greedy` re-runs each prompt with llama.cpp's own greedy sampler and checks equality.)
const TOP2_OPTS = {temperature: 1, topK: 2, topP: 1, minP: 0, seed: 1};
const GREEDY_OPTS = {temperature: 0}; // llama.cpp greedy sampler: chain = [greedy], no penalties

async function greedyContinuation(sequence, promptIds) {
    const steps = [];
    let input = promptIds.map((t, i) => i === promptIds.length - 1
        ? [t, {generateNext: {probabilities: true, options: TOP2_OPTS}}]
        : t);
    for (let step = 0; step < GREEDY_TOKENS; step++) {
        const res = await sequence.controlledEvaluate(input);
        const t2 = top2(res[input.length - 1].next.probabilities);
        // exact tie: llama.cpp's greedy sampler keeps the lowest token id
        const tok = (t2.p2 != null && t2.p1 === t2.p2) ? Math.min(t2.id1, t2.id2) : t2.id1;
        const other = tok === t2.id1 ? t2.id2 : t2.id1;
        steps.push({tok, other, gap: Math.log(t2.p1 / t2.p2), p1p2sum: t2.p1 + t2.p2});
        // keep going past EOS: the EOG token is fed back like any other token
        input = [[tok, {generateNext: {probabilities: true, options: TOP2_OPTS}}]];
    }
    return steps;
}

async function greedyWithSampler(sequence, promptIds) {
    const ids = [];
    let input = promptIds.map((t, i) => i === promptIds.length - 1
        ? [t, {generateNext: {token: true, options: GREEDY_OPTS}}]
        : t);
    for (let step = 0; step < GREEDY_TOKENS; step++) {
        const res = await sequence.controlledEvaluate(input);
        const tok = res[input.length - 1].next.token;
        ids.push(tok);
        input = [[tok, {generateNext: {token: true, options: GREEDY_OPTS}}]];
    }
    return ids;
}

async function makeGreedy(model, context, key, verify) {
    const out = [];
    for (const p of greedyPrompts(key)) {
        const {ids: promptIds} = tokenizeDefault(model, p.text, !!p.parse_special);
        let sequence = context.getSequence();
        const steps = await greedyContinuation(sequence, promptIds);
        await sequence.dispose();
        const ids = steps.map((s) => s.tok);
        if (verify) {
            sequence = context.getSequence();
            const check = await greedyWithSampler(sequence, promptIds);
            await sequence.dispose();
            if (JSON.stringify(check) !== JSON.stringify(ids))
                throw new Error(`greedy mismatch for ${p.name}: top2 ${ids} vs greedy sampler ${check}`);
        }
        const eosIdx = ids.findIndex((t) => model.isEogToken(t));
        out.push({
            name: p.name,
            prompt: p.text,
            parse_special: !!p.parse_special,
            prompt_ids: promptIds,
            n_predict: GREEDY_TOKENS,
            ids,
            top2_ids: steps.map((s) => s.other),
            logit_gaps: steps.map((s) => round(s.gap, 6)),
            eos_at: eosIdx >= 0 ? eosIdx : null,
            text: model.detokenize(ids, false)
        });
        process.stderr.write(`  greedy ${p.name}${verify ? " (verified)" : ""}: ${JSON.stringify(out.at(-1).text.slice(0, 70))}\n`);
    }
    return out;
}

// llama-perplexity method: tokenize the whole file (add special tokens, parse_special = false),
// chunks of n_ctx tokens, first token of each chunk replaced by BOS when the model adds BOS,
// one batch per chunk, score -log p(tok[i+1] | tok[0..i]) for i in [n_ctx/2, n_ctx - 1).
async function makePerplexity(model, context, maxChunks) {
    let text = fs.readFileSync(PPL_TEXT, "utf8");
    if (text.endsWith("\n")) text = text.slice(0, -1); // llama.cpp's -f drops one trailing newline
    const {ids: tokens, add_bos: addBos} = tokenizeDefault(model, text, false);
    const nChunkMax = Math.floor(tokens.length / PPL_CTX);
    const nChunk = maxChunks > 0 ? Math.min(maxChunks, nChunkMax) : nChunkMax;
    const first = PPL_CTX / 2;
    const sequence = context.getSequence();
    let nll = 0, count = 0, minProb = 1;
    const running = [];
    const t0 = performance.now();
    for (let c = 0; c < nChunk; c++) {
        const chunk = tokens.slice(c * PPL_CTX, (c + 1) * PPL_CTX);
        if (addBos) chunk[0] = model.tokens.bos;
        await sequence.clearHistory();
        const input = chunk.map((t, i) => (i >= first && i < PPL_CTX - 1)
            ? [t, {generateNext: {probabilities: true, options: {temperature: 0}}}]
            : t);
        const probs = new Array(PPL_CTX).fill(null);
        // read the target's probability as each position is sampled, then drop the full-vocab map
        if (sequence.nextTokenIndex !== 0) throw new Error("sequence not empty");
        await sequence.controlledEvaluate(input, {
            onTokenResult(i, output) {
                probs[i] = output.next.probabilities.get(chunk[i + 1]) ?? 0;
                output.next.probabilities = undefined;
            }
        });
        if (sequence.nextTokenIndex !== PPL_CTX) throw new Error(`unexpected context shift (${sequence.nextTokenIndex})`);
        for (let i = first; i < PPL_CTX - 1; i++) {
            const p = probs[i];
            if (!(p > 0)) throw new Error(`zero probability for token ${chunk[i + 1]} in chunk ${c}`);
            minProb = Math.min(minProb, p);
            nll -= Math.log(p);
            count++;
        }
        running.push(round(Math.exp(nll / count), 4));
        process.stderr.write(`  ppl [${c + 1}/${nChunk}] ${running.at(-1)} (${((performance.now() - t0) / 1000).toFixed(1)}s)\n`);
    }
    await sequence.dispose();
    return {
        text_file: "fixtures/gpl-3.txt",
        ctx: PPL_CTX,
        chunks: nChunk,
        tokens: tokens.length,
        scored_tokens: count,
        ppl: round(Math.exp(nll / count), 6),
        kv_cells: context.contextSize,
        batch: context.batchSize,
        mean_nll: round(nll / count, 8),
        running_ppl: running,
        min_target_prob: minProb
    };
}

// Pretty JSON with arrays of numbers/null kept on one line (keeps fixtures small and diffable).
function formatJson(value) {
    return JSON.stringify(value, null, 1).replace(/\[\n\s*((?:-?[\d.eE+-]+|null)(?:,\n\s*(?:-?[\d.eE+-]+|null))*)\n\s*\]/g,
        (_, body) => "[" + body.split(/,\n\s*/).join(", ") + "]");
}

// ---------------------------------------------------------------------------------------------
async function main() {
    const args = parseArgs(process.argv.slice(2));
    const llama = await loadLlama(THREADS);
    const versions = versionInfo(llama);
    fs.mkdirSync(args.out, {recursive: true});
    for (const [key, file] of Object.entries(MODELS)) {
        if (args.only && args.only !== key) continue;
        const modelPath = path.join(modelsDir(), file);
        if (!fs.existsSync(modelPath)) {
            console.error(`skip ${key}: ${modelPath} not found`);
            continue;
        }
        process.stderr.write(`${key}: loading ${modelPath}\n`);
        const model = await llama.loadModel({modelPath});
        const fixture = {
            model: file,
            model_key: key,
            llama_cpp: versions,
            generated_by: "tests/reference/make_fixtures.mjs",
            settings: {
                threads: THREADS,
                greedy_ctx: GREEDY_CTX,
                swa_full_cache: true,
                swa_size: model.fileInsights.swaSize ?? null,
                flash_attention: "auto",
                tokenization: "add_special=true (BOS/EOS per model flags), parse_special=false unless noted",
                vocab_type: model.vocabularyType,
                bos: model.tokens.bos,
                eos: model.tokens.eos,
                add_bos: model.tokens.shouldPrependBosToken,
                add_eos: model.tokens.shouldAppendEosToken
            },
            tokenize: makeTokenize(model)
        };

        const greedyCtx = await model.createContext({
            contextSize: GREEDY_CTX, batchSize: GREEDY_CTX, threads: THREADS,
            swaFullCache: true, sequences: 1, failedCreationRemedy: false
        });
        process.stderr.write(`  greedy context: size=${greedyCtx.contextSize} batch=${greedyCtx.batchSize} threads=${greedyCtx.idealThreads}\n`);
        fixture.greedy = await makeGreedy(model, greedyCtx, key, args.verifyGreedy);
        await greedyCtx.dispose();

        if (!args.skipPpl) {
            // KV cache of 2 * n_ctx cells: a sequence that exactly fills a node-llama-cpp context
            // triggers its automatic context shift, which would corrupt the next chunk's evaluation.
            const pplCtx = await model.createContext({
                contextSize: 2 * PPL_CTX, batchSize: PPL_CTX, threads: THREADS,
                swaFullCache: true, sequences: 1, failedCreationRemedy: false
            });
            fixture.perplexity = await makePerplexity(model, pplCtx, args.pplChunks);
            await pplCtx.dispose();
        }
        await model.dispose();

        const outFile = path.join(args.out, `${key}.json`);
        fs.writeFileSync(outFile, formatJson(fixture) + "\n");
        process.stderr.write(`wrote ${outFile}` + (fixture.perplexity ? ` (ppl ${fixture.perplexity.ppl})` : "") + "\n");
    }
    await llama.dispose();
}

await main();
