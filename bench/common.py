"""Paths and small helpers shared by the benchmark driver, its sections and its workers."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("MLXGP_CACHE", ROOT / ".cache"))
MODELS = CACHE / "models"
DEFAULT_GGUF = MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
HF_F32_DIR = MODELS / "smollm2-135m-hf-f32"
MLX_Q4_DIR = MODELS / "smollm2-135m-mlx-q4"
MLX_Q8_DIR = MODELS / "smollm2-135m-mlx-q8"  # the speculative section's draft
# MLX's microscaling modes (mlx_lm.convert --q-mode): the generation section's mxfp4 / nvfp4 rows.
MLX_MXFP4_DIR = MODELS / "smollm2-135m-mlx-mxfp4"
MLX_NVFP4_DIR = MODELS / "smollm2-135m-mlx-nvfp4"
PYTHON = ROOT / ".venv" / "bin" / "python"
