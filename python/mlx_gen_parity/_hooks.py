"""Attaching hooks to a model for longer than one call, and steering-vector extraction."""
from . import _core


def add_hook(model, hook):
    """Attaches `hook` to every later forward of `model` (checked against it); returns a handle."""
    return _core.add_hook(model, hook)


def remove_hook(model, handle):
    model.remove_hook(handle)


def _ids(tokenizer, prompts):
    return [tokenizer.encode(p) if isinstance(p, str) else list(p) for p in prompts]


def extract_steering_vector(model, tokenizer, positive, negative, layer, reduce="last"):
    """mean(activations(positive)) - mean(activations(negative)) after block `layer`: [hidden] float32.
    Prompts are strings (encoded with `tokenizer`) or token id lists."""
    return _core.extract_steering_vector(model, _ids(tokenizer, positive), _ids(tokenizer, negative), layer, reduce)
