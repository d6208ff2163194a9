"""mlx-gen-parity from Python: the C++ library (HF generate() parity on MLX) behind the seed's API.

    from mlx_gen_parity import load, GenerationConfig, generate
    model, tokenizer = load("default")
    out = generate(model, tokenizer, "The capital of France is", GenerationConfig(max_tokens=16))
    print(out["text"])

mlx arrays cross the boundary as mlx.core.array (the extension shares mlx's nanobind domain).
"""
import os as _os

# float32 means float32, as in PyTorch (allow_tf32 is off for matmuls by default): MLX's CUDA backend
# otherwise runs fp32 matmuls as TF32 (MLX_ENABLE_TF32 defaults to 1), which moved SmolLM2's logits
# by 0.057 against transformers on an H200. MLX reads the variable once, at its first fp32 matmul;
# set MLX_ENABLE_TF32=1 before importing to opt back in. No effect on the CPU.
_os.environ.setdefault("MLX_ENABLE_TF32", "0")
# OpenBLAS (MLX's BLAS on Linux) keeps its threads spinning for ~0.1 s after every sgemm, so after a
# prefill they take the cores from the decode kernels; it reads this once, when it loads (as the CLI
# sets it: cli/main.cpp). Only effective if nothing in the process has loaded MLX yet.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "16")

import mlx.core as _mx  # noqa: E402,F401  (registers mlx.core.array with nanobind before _core loads)

from . import _core  # noqa: E402
from ._config import GenerationConfig
from ._generate import GenerationStream, generate, stream_generate
from ._load import load
from ._training import SGD, AdamW, TrainingConfig, add_lora, loss_forward, train_step, xent_loss
from ._core import Hook, Model, ModelArgs, Tokenizer, supported_model_types
from ._hooks import (ActivationCaptureHook, LogitBiasHook, ResidualInjectionHook, SoftPromptHook, add_hook,
                     extract_steering_vector, remove_hook)
from ._distributed import distributed_init, shard_model

__version__ = _core.__version__

__all__ = [
    "load", "GenerationConfig", "generate", "stream_generate", "GenerationStream",
    "Hook", "LogitBiasHook", "ResidualInjectionHook", "SoftPromptHook", "ActivationCaptureHook",
    "add_hook", "remove_hook", "extract_steering_vector",
    "TrainingConfig", "AdamW", "SGD", "train_step", "loss_forward", "xent_loss", "add_lora",
    "distributed_init", "shard_model",
    "Model", "ModelArgs", "Tokenizer", "supported_model_types", "__version__",
]
