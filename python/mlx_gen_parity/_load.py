"""load(): a checkpoint (HF folder, MLX folder, .gguf file or "default") -> (model, tokenizer)."""
import os

from . import _core


def load(path_or_gguf="default", dtype=None, int8_activations=False):
    """Returns (model, tokenizer); tokenizer is None when the folder has no tokenizer files.

    dtype: "float32" | "bfloat16" | "float16" computes in that dtype (quantized weights are
    dequantized); None keeps the checkpoint's own choice.
    int8_activations: a GGUF's Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / Q4_K / Q6_K tensors multiply as llama.cpp's CPU backend does
    (activations quantized to 8 bits, integer dot products; AVX-512 VNNI CPUs): faster, with llama.cpp's
    rounding rather than transformers'. Refused with a dtype, for folders, or where it cannot run."""
    if not isinstance(int8_activations, bool):
        raise TypeError(f"[load] int8_activations must be True or False, got {int8_activations!r}")
    path = os.fspath(path_or_gguf)
    if path != "default":
        path = os.path.expanduser(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"[load] no such file or folder: {path}")
    return _core.load(path, dtype, int8_activations)


def _apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False):
    """transformers' apply_chat_template for [{"role", "content"}] messages: text, or ids when tokenize."""
    turns = [(m["role"], m["content"]) for m in messages]
    text = self._apply_chat_template(turns, add_generation_prompt)
    return self.encode(text, add_special_tokens=False) if tokenize else text


_core.Tokenizer.apply_chat_template = _apply_chat_template
