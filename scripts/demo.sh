#!/usr/bin/env bash
# The README's first command: installs what is needed (Debian packages), builds
# the `ncas` command line and continues a sentence with the shipped demo model.
#
#   bash scripts/demo.sh ["your prompt"]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh build
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DNCAS_BUILD_TESTS=OFF > /dev/null
ninja -C build/release ncas > /dev/null
prompt=${1:-"It is a truth universally acknowledged"}
exec build/release/examples/ncas generate --prompt "$prompt" -n 64 --temp 0.7 --top-p 0.9 --seed 1
