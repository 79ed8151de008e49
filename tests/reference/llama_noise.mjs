#!/usr/bin/env node
// llama.cpp's own numerical noise: re-evaluate each fixture's greedy case teacher-forced in ONE batch
// (prompt ++ llama.cpp's 32 greedy tokens) and compare with the fixture, which llama.cpp produced token
// by token. Reports, with the same measures the Rust real-model test prints for deepedge: top-1 agreement
// with ties (< 1e-3) excluded, and the mean |gap difference| between the fixture's top-2 tokens.
//
// Usage: node llama_noise.mjs MODEL_KEY
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {modelsDir, loadLlama} from "./common.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const key = process.argv[2];
const fx = JSON.parse(fs.readFileSync(path.join(HERE, "fixtures", `${key}.json`), "utf8"));
const llama = await loadLlama(2);
const model = await llama.loadModel({modelPath: path.join(modelsDir(), `${key}.gguf`)});
const context = await model.createContext({
    contextSize: fx.settings.greedy_ctx, batchSize: fx.settings.greedy_ctx, threads: 2,
    swaFullCache: true, sequences: 1, failedCreationRemedy: false
});
const TOP2 = {temperature: 1, topK: 2, topP: 1, minP: 0, seed: 1};
let counted = 0, agree = 0, gapErr = 0, gapN = 0, flips = [];
for (const c of fx.greedy) {
    const seq = context.getSequence();
    const all = [...c.prompt_ids, ...c.ids.slice(0, -1)];
    const start = c.prompt_ids.length - 1;
    const input = all.map((t, i) => i >= start ? [t, {generateNext: {probabilities: true, options: TOP2}}] : t);
    const res = await seq.controlledEvaluate(input);
    for (let i = 0; i < c.ids.length; i++) {
        const probs = res[start + i].next.probabilities;
        const entries = [...probs.entries()];
        const top = entries[0][0];
        const pe = probs.get(c.ids[i]), pr = probs.get(c.top2_ids[i]);
        if (pe != null && pr != null) { gapErr += Math.abs(Math.log(pe / pr) - c.logit_gaps[i]); gapN++; }
        if (c.logit_gaps[i] < 1e-3) continue;
        counted++;
        if (top === c.ids[i]) agree++;
        else flips.push(`${c.name}[${i}] gap ${c.logit_gaps[i]}`);
    }
    await seq.dispose();
}
console.log(JSON.stringify({model: key, batched_vs_fixture_agreement: `${agree}/${counted}`,
    rate: agree / counted, mean_gap_difference: gapErr / gapN, gap_positions: gapN, flips}));
