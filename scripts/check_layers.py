#!/usr/bin/python3
"""Fails when a header under include/ncas includes one from a layer above it.

The layers, lowest first (docs/architecture.md draws them):

  base     error.hpp, the thread pool, mapped files, aligned buffers: no ncas dependencies
  format   format/ (GGUF, block formats), text/ (tokenizer, sampler), config.hpp, tensor.hpp
  memory   memory/ (expert sources and the arena that streams them)
  kernels  cpu/ and vk/: the CPU kernel table and matmul, the CPU KV cache; the Vulkan
           context, buffers, pipelines, generated SPIR-V and ops
  model    model/: weights bound from a file, the loaded model, the forward pass's order
  backend  each backend's verbs and device weights, and what every session shares
  session  the sessions a host application makes, and the umbrella headers

A header may include its own layer and any layer below. Usage: scripts/check_layers.py
(from anywhere); prints each violation and exits 1 when there is one.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "include", "ncas")
LAYERS = ["base", "format", "memory", "kernels", "model", "backend", "session"]

# Exact files first, then folders; a file matching neither is an error (every header has a layer).
FILES = {
    "error.hpp": "base",
    "cpu/thread_pool.hpp": "base",
    "memory/mapped_file.hpp": "base",
    "memory/aligned_buffer.hpp": "base",
    "config.hpp": "format",
    "tensor.hpp": "format",
    "vk/device_options.hpp": "base",
    "cpu/forward.hpp": "backend",
    "vk/weights.hpp": "backend",
    "vk/expert_slots.hpp": "backend",
    "session_params.hpp": "backend",
    "session_base.hpp": "backend",
    "session.hpp": "session",
    "backend.hpp": "session",
    "generate.hpp": "session",
    "state.hpp": "session",
    "ncas.hpp": "session",
    "vk.hpp": "session",
    "vk/session.hpp": "session",
    "vk/backend.hpp": "session",
}
FOLDERS = {"format": "format", "text": "format", "memory": "memory", "cpu": "kernels", "vk": "kernels", "model": "model"}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]ncas/([^">]+)[">]', re.M)


def layer_of(rel):
    if rel in FILES:
        return FILES[rel]
    top = rel.split("/")[0]
    if top in FOLDERS:
        return FOLDERS[top]
    return None


def main():
    bad = []
    n = 0
    for dirpath, _, names in os.walk(ROOT):
        for name in sorted(names):
            if not name.endswith((".hpp", ".h")):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, ROOT)
            mine = layer_of(rel)
            if mine is None:
                bad.append(f"include/ncas/{rel}: in no layer (add it to scripts/check_layers.py)")
                continue
            n += 1
            with open(path, encoding="utf-8") as f:
                for inc in INCLUDE.findall(f.read()):
                    theirs = layer_of(inc)
                    if theirs is None:
                        bad.append(f"include/ncas/{rel}: includes ncas/{inc}, which is in no layer")
                    elif LAYERS.index(theirs) > LAYERS.index(mine):
                        bad.append(f"include/ncas/{rel} ({mine}) includes ncas/{inc} ({theirs}): a layer above it")
    for b in bad:
        print("FAIL: " + b)
    if bad:
        return 1
    print(f"check_layers: {n} headers, every include goes to the same layer or one below")
    return 0


if __name__ == "__main__":
    sys.exit(main())
