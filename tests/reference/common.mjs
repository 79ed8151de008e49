// Shared helpers for the llama.cpp reference scripts (node-llama-cpp).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

/** node-llama-cpp's own package.json (its "exports" hide it from require/import). */
function nodeLlamaCppPackageJson() {
    let dir = path.dirname(fileURLToPath(import.meta.resolve("node-llama-cpp")));
    for (; ;) {
        const candidate = path.join(dir, "package.json");
        if (fs.existsSync(candidate)) {
            const pkg = JSON.parse(fs.readFileSync(candidate, "utf8"));
            if (pkg.name === "node-llama-cpp") return pkg;
        }
        const parent = path.dirname(dir);
        if (parent === dir) return {version: null};
        dir = parent;
    }
}

/** Cache dir: $DEEPEDGE_CACHE, default ~/.cache/deepedge; models live in <cache>/models/. */
export function cacheDir() {
    return process.env.DEEPEDGE_CACHE || path.join(os.homedir(), ".cache", "deepedge");
}

export function modelsDir() {
    return path.join(cacheDir(), "models");
}

/** The two reference models: key -> file name under <cache>/models/. */
export const MODELS = {
    "qwen2.5-coder-0.5b-instruct-q4_k_m": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    "gemma-3-270m-q4_k_m": "gemma-3-270m-q4_k_m.gguf"
};

/** CPU-only llama.cpp from the prebuilt binaries shipped in the npm package; never builds from source. */
export async function loadLlama(threads = 2) {
    return await getLlama({
        gpu: false,
        build: "never",
        maxThreads: threads,
        logLevel: LlamaLogLevel.error
    });
}

/** Version info: node-llama-cpp package version plus llama.cpp release/commit of the bundled build. */
export function versionInfo(llama) {
    const pkg = nodeLlamaCppPackageJson();
    const info = {
        node_llama_cpp: pkg.version,
        llama_cpp_repo: llama.llamaCppRelease?.repo ?? null,
        llama_cpp_release: llama.llamaCppRelease?.release ?? null,
        build_type: llama.buildType,
        gpu: llama.gpu,
        system_info: llama.systemInfo.trim()
    };
    return info;
}

/** Read a /proc/self/status field (kB) and return MiB, or null where unavailable. */
export function procStatusMiB(field) {
    try {
        const status = fs.readFileSync("/proc/self/status", "utf8");
        const m = status.match(new RegExp("^" + field + ":\\s+(\\d+)\\s+kB", "m"));
        return m ? Number(m[1]) / 1024 : null;
    } catch {
        return null;
    }
}

/**
 * llama.cpp's default prompt tokenization: add special tokens per the model's flags
 * (BOS if add_bos, EOS if add_eos), parse_special = false.
 * node-llama-cpp's model.tokenize(text, false) is common_tokenize(vocab, text, add_special=false, parse_special=false),
 * so the BOS/EOS are added here exactly as llama_vocab::tokenize does with add_special=true.
 */
export function tokenizeDefault(model, text, parseSpecial = false) {
    const ids = text === "" ? [] : Array.from(model.tokenize(text, parseSpecial));
    const addBos = model.tokens.shouldPrependBosToken && model.tokens.bos != null;
    const addEos = model.tokens.shouldAppendEosToken && model.tokens.eos != null;
    return {
        ids: [...(addBos ? [model.tokens.bos] : []), ...ids, ...(addEos ? [model.tokens.eos] : [])],
        add_bos: addBos,
        add_eos: addEos
    };
}

/** Top two entries of node-llama-cpp's probability map (sorted by logit, highest first). */
export function top2(probabilities) {
    const it = probabilities.entries();
    const a = it.next().value;
    const b = it.next().value;
    return {id1: a[0], p1: a[1], id2: b ? b[0] : null, p2: b ? b[1] : null};
}

export function round(x, digits = 6) {
    if (x == null || !Number.isFinite(x)) return x == null ? null : String(x);
    const f = 10 ** digits;
    return Math.round(x * f) / f;
}
