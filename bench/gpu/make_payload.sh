#!/usr/bin/env bash
# Builds, here, everything bench/gpu/gpu_check.py needs on a lent NVIDIA machine that reaches no
# network: the pinned mlx + mlx-cuda-13 wheels (libmlx.so stripped), mlx-lm and gguf (Python 3.12
# wheels, unpacked), the project's binaries linked against that libmlx, and the default GGUF.
# The device tool moves at most 64 MiB per call, so the xz-compressed tar is split into chunks
# .dev/p0, .dev/p1, ... (git-ignored); each device call carries one chunk and stashes it in
# /root/mlxgp-dev, and the last one runs bench/gpu/device_setup.sh and gpu_check.py.
#
# The binaries are built in build-cuda against the CPU wheel's headers, which are the CUDA wheel's
# too (same MLX release); at run time they load the CUDA libmlx.so, whose default device is the GPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=.venv/bin/python
CHUNK_BYTES=${CHUNK_BYTES:-62000000}
pin() { grep -E "^$1==" requirements.txt | head -1 | cut -d= -f3 | cut -d';' -f1 | tr -d ' '; }
MLX_V=$(pin mlx); MLX_LM_V=$(pin mlx-lm); GGUF_V=$(pin gguf)
GGUF_MODEL=${MLXGP_CACHE:-$ROOT/.cache}/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$GGUF_MODEL" ] || { echo "[gpu] default model missing at $GGUF_MODEL: run make setup" >&2; exit 2; }

WORK=$(mktemp -d /tmp/mlxgp-payload.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/stage
mkdir -p "$WORK/whl" "$STAGE/site" "$STAGE/bin" "$STAGE/cache/models"

echo "[gpu] wheels: mlx $MLX_V, mlx-cuda-13 $MLX_V, mlx-lm $MLX_LM_V, gguf $GGUF_V (cp312, manylinux x86_64)"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  -d "$WORK/whl" "mlx==$MLX_V" "mlx-cuda-13==$MLX_V" "mlx-lm==$MLX_LM_V" "gguf==$GGUF_V"
for w in "$WORK"/whl/*.whl; do unzip -q -o "$w" -d "$STAGE/site"; done
strip --strip-unneeded "$STAGE/site/mlx/lib/libmlx.so"

echo "[gpu] building build-cuda (OpenBLAS interposition off: the GPU does the matmuls)"
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DMLXGP_INTERPOSE_OPENBLAS=OFF \
  -DMLX_DIR="$("$PY" -m mlx --cmake-dir)/share/cmake/MLX" > /dev/null
cmake --build build-cuda -j 2 > /dev/null
for f in build-cuda/mlxgp build-cuda/test_*; do  # executables only (not the ctest include files)
  [ -x "$f" ] && [ -f "$f" ] && case "$f" in *.cmake) ;; *) cp "$f" "$STAGE/bin/" ;; esac
done
strip "$STAGE"/bin/mlxgp "$STAGE"/bin/test_*
# The system libraries the CLI links that the device image may lack (jemalloc, cpp-httplib, pcre2, ...):
# device_setup.sh puts them last on LD_LIBRARY_PATH, so the image's own copies win where it has them.
mkdir -p "$STAGE/syslib"
ldd build-cuda/mlxgp | awk '$3 ~ /^\/(usr\/)?lib/ {print $3}' \
  | grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' | xargs -r cp -L -t "$STAGE/syslib/"
cp "$GGUF_MODEL" "$STAGE/cache/models/"
# The unit tests read fixtures from paths compiled in (the cache and tests/data of this checkout);
# gpu_check.py links them to the unpacked copies there. Only the tokenizers the C++ tests open.
mkdir -p "$STAGE/cache/tokenizers"
cp -r "$(dirname "$(dirname "$GGUF_MODEL")")"/tokenizers/{gpt2,llama2} "$STAGE/cache/tokenizers/"
CACHE_DIR=$(sed -n 's/^MLXGP_DEFAULT_CACHE_DIR:PATH=//p' build-cuda/CMakeCache.txt)
printf '{"cache_dir": "%s", "test_data_dir": "%s"}\n' "$CACHE_DIR" "$ROOT/tests/data" > "$STAGE/bin/compiled_paths.json"

echo "[gpu] compressing (xz -9, a few minutes)"
tar -C "$STAGE" -cf - . | xz -9 -T2 > "$WORK/payload.tar.xz"
rm -rf .dev
mkdir -p .dev
grep -qx '/.dev/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.dev/' >> .git/info/exclude; }
split -b "$CHUNK_BYTES" -d -a 2 "$WORK/payload.tar.xz" "$WORK/part"
i=0
for part in "$WORK"/part*; do
  mkdir -p ".dev/p$i"
  mv "$part" ".dev/p$i/"
  i=$((i + 1))
done
sha256sum "$WORK/payload.tar.xz" | cut -d' ' -f1 > .dev/payload.sha256
ls -la .dev/p*/
echo "[gpu] $i chunks in .dev/ (sha256 $(cat .dev/payload.sha256))"
