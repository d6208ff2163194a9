#!/usr/bin/env bash
# On the lent NVIDIA machine: reassembles the chunks that earlier device calls stashed in
# /root/mlxgp-dev (see make_payload.sh), checks them against .dev/payload.sha256, unpacks them into
# /tmp/mlxgp-gpu, and writes /tmp/mlxgp-gpu/env.sh. The CUDA libraries libmlx.so needs (cuBLAS,
# cuDNN, NVRTC, NCCL, cuFFT, cuSOLVER) are the ones the image's PyTorch ships: libmlx's RPATH looks
# for them in ../../nvidia, so that folder is linked next to the unpacked site.
set -euo pipefail
STASH=${STASH:-/root/mlxgp-dev}
DEST=${DEST:-/tmp/mlxgp-gpu}
rm -rf "$DEST"
mkdir -p "$DEST"
cat "$STASH"/part* > "$DEST/payload.tar.xz"
if [ -f .dev/payload.sha256 ]; then
  echo "$(cat .dev/payload.sha256)  $DEST/payload.tar.xz" | sha256sum -c --quiet - || {
    echo "[gpu] payload checksum mismatch (chunks from another build?)" >&2; exit 3; }
fi
if command -v xz > /dev/null; then
  tar -C "$DEST" -xJf "$DEST/payload.tar.xz"
else
  python3 -c "import sys, tarfile; tarfile.open(sys.argv[1], 'r:xz').extractall(sys.argv[2])" "$DEST/payload.tar.xz" "$DEST"
fi
rm -f "$DEST/payload.tar.xz"
TORCH_SITE=$(python3 -c "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))")
ln -sfn "$TORCH_SITE/nvidia" "$DEST/site/nvidia"
NV_LIBS=$( (ls -d "$TORCH_SITE"/nvidia/*/lib 2> /dev/null || true) | tr '\n' ':')
cat > "$DEST/env.sh" <<EOF
export PYTHONPATH=$DEST/site\${PYTHONPATH:+:\$PYTHONPATH}
export LD_LIBRARY_PATH=$DEST/site/mlx/lib:$DEST/site/mlx_cuda_13.libs:$NV_LIBS\${LD_LIBRARY_PATH:-}:$DEST/syslib
if [ -d /usr/local/cuda/include ]; then export CUDA_HOME=\${CUDA_HOME:-/usr/local/cuda}; fi  # NVRTC headers
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
EOF
echo "[gpu] unpacked into $DEST ($(du -sh "$DEST" | cut -f1)); source $DEST/env.sh"
