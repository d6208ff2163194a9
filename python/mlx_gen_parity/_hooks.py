"""Attaching hooks to a model for longer than one call, and steering-vector extraction. Models and
tokenizers may be mlxgp's or mlx-lm's (mlx_gen_parity.interop)."""
from . import _core
from .interop import as_model, as_tokenizer


def add_hook(model, hook):
    """Attaches `hook` to every later forward of `model` (checked against it); returns a handle."""
    return _core.add_hook(as_model(model), hook)


def remove_hook(model, handle):
    as_model(model).remove_hook(handle)


def _ids(tokenizer, prompts):
    return [tokenizer.encode(p) if isinstance(p, str) else list(p) for p in prompts]


def extract_steering_vector(model, tokenizer, positive, negative, layer, reduce="last"):
    """mean(activations(positive)) - mean(activations(negative)) after block `layer`: [hidden] float32.
    Prompts are strings (encoded with `tokenizer`) or token id lists."""
    tokenizer, folder = as_tokenizer(tokenizer)
    return _core.extract_steering_vector(as_model(model, folder), _ids(tokenizer, positive),
                                         _ids(tokenizer, negative), layer, reduce)
