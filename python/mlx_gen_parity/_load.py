"""load(): a checkpoint (HF folder, MLX folder, .gguf file or "default") -> (model, tokenizer)."""
import json
import os

from . import _core
from ._checks import (ARRAY, BOOL, IDS, INT, NONE, PATH, STR, Kind, _lone_surrogate, check, check_method, checked,
                      list_of)


@checked("load", path_or_gguf=PATH, dtype=STR | NONE, int8_activations=BOOL)
def load(path_or_gguf="default", dtype=None, int8_activations=False):
    """Returns (model, tokenizer); tokenizer is None when the folder has no tokenizer files.

    dtype: "float32" | "bfloat16" | "float16" computes in that dtype (quantized weights are
    dequantized); None keeps the checkpoint's own choice.
    int8_activations: a GGUF's Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / IQ4_NL / Q4_K / Q5_K / Q6_K / IQ4_XS tensors multiply as llama.cpp's CPU backend does
    (activations quantized to 8 bits, integer dot products; AVX-512 VNNI CPUs): faster, with llama.cpp's
    rounding rather than transformers'. Refused with a dtype, for folders, or where it cannot run."""
    path = os.fspath(path_or_gguf)
    if path != "default":
        path = os.path.expanduser(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"[load] no such file or folder: {path}")
    return _core.load(path, dtype, int8_activations)


# apply_chat_template's tokenizer-side options (their defaults); anything else is a template variable.
_TOKENIZER_OPTIONS = {"padding": False, "truncation": False, "max_length": None, "return_tensors": None,
                      "return_assistant_tokens_mask": False, "tokenizer_kwargs": None,
                      "sanitize_control_tokens": False}


def _json(component, name, value):
    """What the template sees, as JSON text for the C++ renderer (Python dicts keep their key order)."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"[{component}] {name} must be JSON data (dict, list, str, number, bool, None): {e}") from None
    if (at := _lone_surrogate(text)) is not None:
        raise TypeError(f"[{component}] {name} holds a lone surrogate U+{ord(text[at]):04X} (not valid Unicode text)")
    return text


def _apply_chat_template(self, conversation, tools=None, documents=None, chat_template=None,
                         add_generation_prompt=True, continue_final_message=False, tokenize=False,
                         return_dict=False, **kwargs):
    """transformers' apply_chat_template: messages keep every key (tool_calls, name, reasoning_content, ...),
    tools / documents / keyword arguments become template variables, chat_template names one of the
    tokenizer's templates or is a template itself (else tool_use when tools are given, else default).
    Returns the text, or ids when tokenize ({"input_ids", "attention_mask"} with return_dict); a list of
    conversations gives a list. Options that need what mlxgp does not do (continue_final_message, padding,
    truncation, tensors, assistant masks, sanitize_control_tokens) are refused."""
    for name, default in _TOKENIZER_OPTIONS.items():
        if name in kwargs and kwargs.pop(name) != default:
            raise ValueError(f"[tokenizer] apply_chat_template: {name} is not supported")
    if continue_final_message:
        raise ValueError("[tokenizer] apply_chat_template: continue_final_message is not supported")
    check("tokenizer", "add_generation_prompt", add_generation_prompt, BOOL)
    check("tokenizer", "tokenize", tokenize, BOOL)
    check("tokenizer", "return_dict", return_dict, BOOL)
    check("tokenizer", "chat_template", chat_template, STR | NONE)
    check("tokenizer", "conversation", conversation, _CONVERSATION | _CONVERSATIONS)
    if tools is not None:
        check("tokenizer", "tools", tools, _TOOLS)
    if documents is not None:
        check("tokenizer", "documents", documents, _DOCUMENTS)
    extra = _json("tokenizer", "the template variables", {**kwargs, "tools": tools, "documents": documents})
    batched = _CONVERSATIONS.test(conversation) and len(conversation) > 0 and not _CONVERSATION.test(conversation)
    out = []
    for conv in (conversation if batched else [conversation]):
        text = self._render_chat(_json("tokenizer", "conversation", list(conv)), add_generation_prompt,
                                 chat_template or "", extra)
        if tokenize:
            ids = self.encode(text, add_special_tokens=False)
            text = {"input_ids": ids, "attention_mask": [1] * len(ids)} if return_dict else ids
        out.append(text)
    return out if batched else out[0]


_CONVERSATION = list_of(Kind("a dict (a message)", lambda m: isinstance(m, dict)), "a list of messages (dicts)")
_CONVERSATIONS = list_of(_CONVERSATION, "a list of conversations")
_TOOLS = list_of(Kind("a dict (a JSON schema; functions are not converted)", lambda t: isinstance(t, dict)),
                 "a list of tools")
_DOCUMENTS = list_of(Kind("a dict", lambda d: isinstance(d, dict)), "a list of documents (dicts)")

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
