#!/usr/bin/env python3
"""Greedy continuations of the demo prompts by the float64 reference on the
dequantised weights of models/demo-q8_0.gguf (docs/spec.md §4: a Q8_0 file must give
the same greedy tokens for at least 32 steps as the reference on its own
dequantised weights). Writes tests/data/demo_q8_0_greedy.json.

    /usr/bin/python3 tools/make_demo_goldens.py
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import Reference  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    prompts = json.load(open(os.path.join(ROOT, "tests", "data", "demo_greedy.json")))
    ref = Reference(os.path.join(ROOT, "models", "demo-q8_0.gguf"))
    n = prompts["n_predict"]
    out = {"model": "models/demo-q8_0.gguf", "n_predict": n,
           "note": "float64 reference on the dequantised Q8_0 weights; greedy = argmax, lower id on ties",
           "cases": []}
    for c in prompts["cases"]:
        ids = list(c["prompt_ids"])
        cont = []
        for _ in range(n):
            logits, _ = ref.forward(ids)
            nxt = int(np.argmax(logits[-1]))
            cont.append(nxt)
            ids.append(nxt)
        out["cases"].append({"prompt": c["prompt"], "prompt_ids": c["prompt_ids"], "continuation_ids": cont})
        print(c["prompt"], cont, flush=True)
    with open(os.path.join(ROOT, "tests", "data", "demo_q8_0_greedy.json"), "w") as f:
        json.dump(out, f, indent=1)
    write_kv_goldens(prompts)


def greedy(ref, prompt_ids, n):
    ids, cont = list(prompt_ids), []
    for _ in range(n):
        logits, _ = ref.forward(ids)
        nxt = int(np.argmax(logits[-1]))
        cont.append(nxt)
        ids.append(nxt)
    return cont


def write_kv_goldens(prompts):
    """tests/data/demo_kv_greedy.json: the f32 demo's greedy tokens with K and V rounded
    through a q8_0 / q4_0 cache (docs/spec.md §4, quantised KV cache)."""
    n = prompts["n_predict"]
    out = {"model": "models/demo-f32.gguf", "n_predict": n,
           "note": "float64 reference, K and V rounded through the KV cache type; greedy = argmax, lower id on ties"}
    for kv in ("q8_0", "q4_0"):
        ref = Reference(os.path.join(ROOT, "models", "demo-f32.gguf"), kv)
        out[kv] = [{"prompt": c["prompt"], "prompt_ids": c["prompt_ids"],
                    "continuation_ids": greedy(ref, c["prompt_ids"], n)} for c in prompts["cases"]]
        print(kv, [c["continuation_ids"] for c in out[kv]], flush=True)
    with open(os.path.join(ROOT, "tests", "data", "demo_kv_greedy.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    if sys.argv[1:] == ["--kv-only"]:
        write_kv_goldens(json.load(open(os.path.join(ROOT, "tests", "data", "demo_greedy.json"))))
    else:
        main()
