"""load(): a checkpoint (HF folder, MLX folder, .gguf file or "default") -> (model, tokenizer)."""
import os

from . import _core
from ._checks import ARRAY, BOOL, IDS, INT, NONE, PATH, STR, Kind, check, check_method, checked


@checked("load", path_or_gguf=PATH, dtype=STR | NONE, int8_activations=BOOL)
def load(path_or_gguf="default", dtype=None, int8_activations=False):
    """Returns (model, tokenizer); tokenizer is None when the folder has no tokenizer files.

    dtype: "float32" | "bfloat16" | "float16" computes in that dtype (quantized weights are
    dequantized); None keeps the checkpoint's own choice.
    int8_activations: a GGUF's Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / Q4_K / Q6_K tensors multiply as llama.cpp's CPU backend does
    (activations quantized to 8 bits, integer dot products; AVX-512 VNNI CPUs): faster, with llama.cpp's
    rounding rather than transformers'. Refused with a dtype, for folders, or where it cannot run."""
    path = os.fspath(path_or_gguf)
    if path != "default":
        path = os.path.expanduser(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"[load] no such file or folder: {path}")
    return _core.load(path, dtype, int8_activations)


_MESSAGE = Kind("a dict with str 'role' and 'content'", lambda m: isinstance(m, dict) and isinstance(
    m.get("role"), str) and isinstance(m.get("content"), str))


def _apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False):
    """transformers' apply_chat_template for [{"role", "content"}] messages: text, or ids when tokenize."""
    for i, m in enumerate(messages):
        check("tokenizer", f"messages[{i}]", m, _MESSAGE)
    turns = [(m["role"], m["content"]) for m in messages]
    text = self._apply_chat_template(turns, add_generation_prompt)
    return self.encode(text, add_special_tokens=False) if tokenize else text


_core.Tokenizer.apply_chat_template = _apply_chat_template

# The bound methods of Model and Tokenizer refuse a wrong argument type in one line.
_WEIGHTS = Kind("a dict of str to mlx.core.array", lambda w: isinstance(w, dict) and all(
    isinstance(k, str) and ARRAY.test(v) for k, v in w.items()))
for _name, _kinds in {"__setitem__": {"key": STR, "value": ARRAY}, "__getitem__": {"key": STR},
                      "__delitem__": {"key": STR}, "__contains__": {"key": STR}, "__call__": {"tokens": ARRAY},
                      "lm_head": {"h": ARRAY}, "remove_hook": {"handle": INT},
                      "set_parameters": {"weights": _WEIGHTS, "allow_new": BOOL},
                      "save_extra_params": {"path": STR}, "load_extra_params": {"path": STR}}.items():
    check_method(_core.Model, "model", _name, **_kinds)
for _name, _kinds in {"encode": {"text": STR, "add_special_tokens": BOOL},
                      "decode": {"ids": IDS, "skip_special_tokens": BOOL}, "token_to_id": {"token": STR},
                      "id_to_token": {"id": INT}, "is_special": {"id": INT}}.items():
    check_method(_core.Tokenizer, "tokenizer", _name, **_kinds)
