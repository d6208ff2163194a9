"""load(): a checkpoint (HF folder, MLX folder, .gguf file or "default") -> (model, tokenizer)."""
import os

from . import _core


def load(path_or_gguf="default", dtype=None):
    """Returns (model, tokenizer); tokenizer is None when the folder has no tokenizer files.

    dtype: "float32" | "bfloat16" | "float16" computes in that dtype (quantized weights are
    dequantized); None keeps the checkpoint's own choice."""
    path = os.fspath(path_or_gguf)
    if path != "default":
        path = os.path.expanduser(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"[load] no such file or folder: {path}")
    return _core.load(path, dtype)


def _apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False):
    """transformers' apply_chat_template for [{"role", "content"}] messages: text, or ids when tokenize."""
    turns = [(m["role"], m["content"]) for m in messages]
    text = self._apply_chat_template(turns, add_generation_prompt)
    return self.encode(text, add_special_tokens=False) if tokenize else text


_core.Tokenizer.apply_chat_template = _apply_chat_template
