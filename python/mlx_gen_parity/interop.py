"""Interop with HF / mlx-lm checkpoints."""
import os

from . import _core


def convert_hf_to_mlx(hf_path, quantize=False, local_out=None, q_group_size=64, q_bits=4, dtype=None):
    """Converts a local HF folder (config.json + safetensors) into an MLX folder laid out like mlx-lm's
    convert (config.json with "quantization" when quantized, model.safetensors, tokenizer files), the same
    work as `mlxgp convert`. Returns the output folder (default: <hf_path>-mlx[-<bits>bit])."""
    hf_path = os.path.expanduser(os.fspath(hf_path))
    if not os.path.exists(hf_path):
        raise FileNotFoundError(f"[load] no such file or folder: {hf_path}")
    if local_out is None:
        local_out = hf_path.rstrip("/") + (f"-mlx-{q_bits}bit" if quantize else "-mlx")
    local_out = os.path.expanduser(os.fspath(local_out))
    _core.convert_to_mlx(hf_path, local_out, bool(quantize), int(q_group_size), int(q_bits), dtype)
    return local_out
