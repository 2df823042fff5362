#!/usr/bin/env bash
# Installs everything ncas needs on Debian 12, from Debian's archive only.
# Usage: scripts/install-deps.sh [build|test|train|all]   (default: all)
set -euo pipefail
what=${1:-all}
build="g++ cmake meson ninja-build pkg-config libxsimd-dev libgtest-dev"
vulkan="libvulkan-dev glslang-tools spirv-tools mesa-vulkan-drivers vulkan-validationlayers vulkan-tools"
python="python3-numpy python3-regex python3-pytest sentencepiece python3-sentencepiece"  # sentencepiece: tools/spm_vocab.py (the SPM test data)
server="libcpp-httplib-dev nlohmann-json3-dev"  # ncas serve; its tests need node and npm (test.sh installs them when missing)
arm64="g++-aarch64-linux-gnu qemu-user"  # scripts/test.sh's arm64 stage
train="python3-torch libopenblas0-pthread python3-matplotlib unicode-data bible-kjv bible-kjv-text libsword-utils sword-text-web sword-comm-mhcc sword-comm-tdavid sword-comm-scofield dict-devil"
case "$what" in
  build) pkgs="$build" ;;
  test)  pkgs="$build $vulkan $python $server $arm64" ;;
  train) pkgs="$python $train" ;;
  all)   pkgs="$build $vulkan $python $server $arm64 $train" ;;
  *) echo "usage: $0 [build|test|train|all]" >&2; exit 2 ;;
esac
missing=$(dpkg-query -W -f='${Status} ${Package}\n' $pkgs 2>/dev/null | awk '$3!="installed"{print $4}'; \
          for p in $pkgs; do dpkg-query -W "$p" >/dev/null 2>&1 || echo "$p"; done)
missing=$(echo "$missing" | sort -u | xargs)
if [ -n "$missing" ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends $missing
fi
