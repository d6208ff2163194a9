"""Hooks, attaching them to a model for longer than one call, and steering-vector extraction. Models and
tokenizers may be mlxgp's or mlx-lm's (mlx_gen_parity.interop)."""
from . import _core
from ._checks import ARRAY, HOOK, INT, INTS, NONE, NUMBER, STR, Kind, checked, list_of
from .interop import as_model, as_tokenizer

_VECTOR = Kind("an mlx.core.array or an extra parameter's name (str)", lambda v: ARRAY.test(v) or STR.test(v))
_LAYERS = INT | INTS


# The hooks are the C++ classes behind a checked __init__ (a Python subclass: nanobind constructs through
# its own init, so the check cannot be put in front of the bound class's __init__).
class LogitBiasHook(_core.LogitBiasHook):
    __doc__ = _core.LogitBiasHook.__doc__

    @checked("hooks", vector=_VECTOR | NONE, alpha=NUMBER, param_key=STR | NONE)
    def __init__(self, vector=None, alpha=1.0, *, param_key=None):
        super().__init__(vector, alpha, param_key=param_key)


class ResidualInjectionHook(_core.ResidualInjectionHook):
    __doc__ = _core.ResidualInjectionHook.__doc__

    @checked("hooks", layers=_LAYERS | NONE, vector=_VECTOR | NONE, alpha=NUMBER, positions=STR,
             layer=_LAYERS | NONE, param_key=STR | NONE)
    def __init__(self, layers=None, vector=None, alpha=1.0, positions="all", *, layer=None, param_key=None):
        super().__init__(layers, vector, alpha, positions, layer=layer, param_key=param_key)


class SoftPromptHook(_core.SoftPromptHook):
    __doc__ = _core.SoftPromptHook.__doc__

    @checked("hooks", n_virtual=INT, param_key=STR)
    def __init__(self, n_virtual, param_key="_soft_prompt"):
        super().__init__(n_virtual, param_key)


class ActivationCaptureHook(_core.ActivationCaptureHook):
    __doc__ = _core.ActivationCaptureHook.__doc__

    @checked("hooks", layers=_LAYERS, reduce=STR)
    def __init__(self, layers, reduce="last"):
        super().__init__(layers, reduce)

    @checked("hooks", layer=INT)
    def captured(self, layer):
        return super().captured(layer)


@checked("hooks", hook=HOOK)
def add_hook(model, hook):
    """Attaches `hook` to every later forward of `model` (checked against it); returns a handle."""
    return _core.add_hook(as_model(model), hook)


@checked("hooks", handle=INT)
def remove_hook(model, handle):
    as_model(model).remove_hook(handle)


# A bare str is one prompt, not a list of one-character prompts.
_PROMPTS = list_of(STR | INTS, "a list of prompts (str or token id lists)")


def _ids(tokenizer, prompts):
    return [tokenizer.encode(p) if isinstance(p, str) else list(p) for p in prompts]


@checked("steer", positive=_PROMPTS, negative=_PROMPTS, layer=INT, reduce=STR)
def extract_steering_vector(model, tokenizer, positive, negative, layer, reduce="last"):
    """mean(activations(positive)) - mean(activations(negative)) after block `layer`: [hidden] float32.
    Prompts are lists of strings (encoded with `tokenizer`) or of token id lists."""
    tokenizer, folder = as_tokenizer(tokenizer)
    if tokenizer is None and any(isinstance(p, str) for p in [*positive, *negative]):
        raise ValueError("[steer] the model has no tokenizer; pass the prompts as token id lists")
    return _core.extract_steering_vector(as_model(model, folder), _ids(tokenizer, positive),
                                         _ids(tokenizer, negative), layer, reduce)
