"""Interop with HF / mlx-lm checkpoints: converting an HF folder to an MLX one, and running mlxgp on a
model and tokenizer that mlx-lm loaded.

An mlx-lm model (the `mlx.nn.Module` of `mlx_lm.load`) is wrapped without copying its weights: the
mlxgp model is built over the module's own `mx.array`s. The module stays the source of truth:
- weights the module holds now are used (an array replaced since the last call is rebound);
- its extra parameters (`model["_persona_v"] = v`: array entries of the module whose key starts with
  "_", which mlx's `parameters()` leaves out) are what hooks read;
- a `train_step` writes the trained arrays back into the module, so mlx-lm's own forward sees them.
The tokenizer (`TokenizerWrapper`, or a transformers tokenizer) is rebuilt from the tokenizer.json of
its folder; that folder's config.json and generation_config.json then give the model's full config and
generation defaults, as `mlxgp.load(folder)` reads them."""
import dataclasses
import json
import os

from . import _core
from ._checks import BOOL, INT, NONE, PATH, STR, checked


@checked("convert", hf_path=PATH, quantize=BOOL, local_out=PATH | NONE, q_group_size=INT | NONE,
         q_bits=INT | NONE, dtype=STR | NONE, q_mode=STR)
def convert_hf_to_mlx(hf_path, quantize=False, local_out=None, q_group_size=None, q_bits=None, dtype=None,
                      q_mode="affine"):
    """Converts a local HF folder (config.json + safetensors) into an MLX folder laid out like mlx-lm's
    convert (config.json with "quantization" when quantized, model.safetensors, tokenizer files), the same
    work as `mlxgp convert`. q_mode ("affine", "mxfp4", "mxfp8" or "nvfp4", as mlx_lm.convert's) and
    q_group_size / q_bits (default: the mode's, 64 / 4 for affine) need quantize=True. Returns the output
    folder (default: <hf_path>-mlx[-<bits>bit])."""
    # As `mlxgp convert` refuses --q-bits / --q-group-size / --q-mode without --quantize: they would be dropped
    # unseen.
    if not quantize and (q_bits is not None or q_group_size is not None or q_mode != "affine"):
        raise ValueError("[convert] q_bits / q_group_size / q_mode need quantize=True")
    hf_path = os.path.expanduser(os.fspath(hf_path))
    if not os.path.exists(hf_path):
        raise FileNotFoundError(f"[load] no such file or folder: {hf_path}")
    if local_out is None:
        bits = q_bits if q_bits is not None else {"mxfp8": 8}.get(q_mode, 4)
        local_out = hf_path.rstrip("/") + (f"-mlx-{bits}bit" if quantize else "-mlx")
    local_out = os.path.expanduser(os.fspath(local_out))
    as_int = lambda v: None if v is None else int(v)  # noqa: E731
    _core.convert_to_mlx(hf_path, local_out, bool(quantize), as_int(q_group_size), as_int(q_bits), dtype, q_mode)
    return local_out


# --- tokenizers -----------------------------------------------------------------------------------

def tokenizer_folder(tokenizer):
    """The folder an mlx-lm TokenizerWrapper / transformers tokenizer was loaded from, or None."""
    inner = getattr(tokenizer, "_tokenizer", tokenizer)
    path = getattr(inner, "name_or_path", None)
    if isinstance(path, (str, os.PathLike)) and os.path.isdir(path):
        return os.fspath(path)
    return None


def as_tokenizer(tokenizer):
    """(mlxgp Tokenizer or None, folder or None) for an mlxgp Tokenizer, None, or an mlx-lm / transformers
    tokenizer (rebuilt once from its folder's tokenizer.json and kept on it)."""
    if tokenizer is None or isinstance(tokenizer, _core.Tokenizer):
        return tokenizer, None
    cached = getattr(tokenizer, "_mlxgp_tokenizer", None)
    if cached is not None:
        return cached
    folder = tokenizer_folder(tokenizer)
    if folder is None or not os.path.exists(os.path.join(folder, "tokenizer.json")):
        raise TypeError(f"[interop] cannot use a {type(tokenizer).__name__} as the tokenizer: pass an mlxgp "
                        "Tokenizer, or an mlx-lm / transformers tokenizer loaded from a folder with tokenizer.json")
    pair = (_core.load_tokenizer(folder), folder)
    try:
        tokenizer._mlxgp_tokenizer = pair
    except AttributeError:  # a tokenizer that refuses new attributes is rebuilt at each call
        pass
    return pair


# --- models ---------------------------------------------------------------------------------------

def is_mlx_module(obj):
    try:
        import mlx.nn as nn
    except ImportError:  # pragma: no cover - mlx is a dependency
        return False
    return isinstance(obj, nn.Module)


def _read(folder, name):
    if folder is None:
        return None
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read()


def _extras(module):
    """The module's extra parameters: top-level array entries whose key starts with "_"."""
    import mlx.core as mx

    return {k: v for k, v in module.items() if k.startswith("_") and isinstance(v, mx.array)}


# What mlx-lm's modules hard-code instead of reading from ModelArgs (mlx-lm 0.32: gemma's and starcoder2's
# MLPs are exact gelu, gemma2's and gemma3_text's the tanh form, glm's RoPE turns every feature of a head, phimoe's
# attention and head always have biases), so a wrapped module computes what mlx-lm computes.
_MLX_LM_IMPLIED = {"gemma": {"hidden_act": "gelu"}, "starcoder2": {"hidden_act": "gelu"},
                   "gemma2": {"hidden_activation": "gelu_pytorch_tanh"},
                   "gemma3_text": {"hidden_activation": "gelu_pytorch_tanh"}, "glm": {"partial_rotary_factor": 1.0},
                   "phimoe": {"attention_bias": True, "lm_head_bias": True}}


def _mlx_lm_rope(cfg):
    """mlx-lm 0.32's phimoe rotates with LongRoPE's long factors and long_mscale at every length (SuScaledRoPE):
    the same as short ones equal to the long ones."""
    rope = cfg.get("rope_scaling")
    if cfg.get("model_type") == "phimoe" and isinstance(rope, dict) and "long_factor" in rope:
        cfg["rope_scaling"] = {**rope, "short_factor": rope["long_factor"], "short_mscale": rope.get("long_mscale")}


# mlx-lm's multimodal modules (gemma3, mistral3, llama4, qwen2_vl / qwen2_5_vl / qwen3_vl, qwen3_5, qwen3_5_moe) hold
# their language model under this prefix; mlxgp's model names its tensors without it.
_MULTIMODAL = ("gemma3", "mistral3", "llama4", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "qwen3_5_moe")
_LANGUAGE_MODEL = "language_model."


def _prefix(module):
    """The prefix of the module's tensor names that mlxgp's model leaves out."""
    args = getattr(module, "args", None)
    return _LANGUAGE_MODEL if getattr(args, "model_type", None) in _MULTIMODAL else ""


def _args_config(module, weights):
    """config.json fields from the module's ModelArgs (HF names in mlx-lm), its tied head and quantization."""
    args = getattr(module, "args", None)
    if args is None:
        raise TypeError(f"[interop] {type(module).__name__} is not an mlx-lm model (no .args)")
    cfg = dataclasses.asdict(args) if dataclasses.is_dataclass(args) else dict(vars(args))
    cfg = {k: v for k, v in cfg.items() if isinstance(v, (str, int, float, bool, list, dict, type(None)))}
    cfg["tie_word_embeddings"] = _prefix(module) + "lm_head.weight" not in weights
    cfg.update(_MLX_LM_IMPLIED.get(cfg.get("model_type"), {}))
    _mlx_lm_rope(cfg)
    if isinstance(cfg.get("text_config"), dict):
        cfg["text_config"] = {**cfg["text_config"], **_MLX_LM_IMPLIED.get(cfg["text_config"].get("model_type"), {})}
    for _, m in module.named_modules():
        if hasattr(m, "bits") and hasattr(m, "group_size"):
            cfg["quantization"] = {"group_size": m.group_size, "bits": m.bits, "mode": getattr(m, "mode", "affine")}
            break
    return cfg


def _config_json(module, weights, folder):
    """The checkpoint's config.json when `folder` (the tokenizer's) holds the module's checkpoint, else the
    module's ModelArgs. An architecture mlxgp lacks is refused here, by name."""
    args_cfg = _args_config(module, weights)
    model_type = args_cfg.get("model_type")
    supported = _core.supported_model_types()
    # mlxgp names gpt2's, gpt_bigcode's and gpt_neox's tensors as its decoder (model.layers.N...), mlx-lm as GPT-2 /
    # GPTBigCode / GPT-NeoX (model.h.N..., transformer.h.N...), and stacks stablelm's per-head q / k norms
    # (q_layernorm.norms.<h>): weight updates and write_back would miss each other, so those modules are not wrapped.
    if model_type in ("gpt2", "gpt_bigcode", "gpt_neox") or (model_type == "stablelm" and args_cfg.get("qk_layernorm")):
        what = "stablelm with qk_layernorm" if model_type == "stablelm" else model_type
        raise ValueError(f"[interop] mlx-lm model of architecture '{what}' is not supported as a wrapped module (its "
                         "tensor names are not mlxgp's); load its folder with mlx_gen_parity.load")
    # mlx-lm's ernie4_5_moe gives its experts biases with use_bias (transformers' never have one) and its tied head
    # none: the module computes something else than the architecture mlxgp reads.
    if model_type == "ernie4_5_moe" and args_cfg.get("use_bias"):
        raise ValueError("[interop] mlx-lm model of architecture 'ernie4_5_moe' with use_bias is not supported as a "
                         "wrapped module (its experts carry biases transformers' never have)")
    if model_type not in supported:
        raise ValueError(f"[interop] mlx-lm model of architecture {model_type!r} is not supported by mlxgp "
                         f"(supported: {', '.join(supported)})")
    text = _read(folder, "config.json")
    if text is not None:
        cfg = json.loads(text)
        sizes = ("hidden_size", "num_hidden_layers")
        inner = lambda c: c.get("text_config") if isinstance(c.get("text_config"), dict) else c  # noqa: E731
        same = cfg.get("model_type") == model_type and all(inner(cfg).get(k) == inner(args_cfg).get(k) for k in sizes)
        if same:
            cfg["tie_word_embeddings"] = args_cfg["tie_word_embeddings"]
            return json.dumps(cfg)
    return json.dumps(args_cfg)


class _Wrapped:
    """What a wrapped mlx-lm module keeps on itself: the mlxgp model and the arrays it was built over (keyed by
    the module's names, which are `prefix` + the model's)."""

    def __init__(self, module, folder):
        from mlx.utils import tree_flatten

        self.weights = dict(tree_flatten(module.parameters()))
        self.folder = folder
        self.prefix = _prefix(module)
        self.model = _core.model_from_arrays(_config_json(module, self.weights, folder), self.weights,
                                             _read(folder, "generation_config.json") or "",
                                             folder or type(module).__module__)


def as_model(model, folder=None):
    """The mlxgp Model for `model`: itself, or the wrapper over an mlx-lm module (built once, kept on the
    module, and brought up to date with its current arrays and extra parameters). `folder` is the
    checkpoint folder when known (the tokenizer's)."""
    if isinstance(model, _core.Model):
        return model
    if not is_mlx_module(model):
        raise TypeError(f"[interop] expected an mlxgp Model or an mlx-lm model, got {type(model).__name__}")
    from mlx.utils import tree_flatten

    state = model.__dict__.get("_mlxgp_wrapped")
    if state is None or (folder is not None and state.folder != folder):
        state = _Wrapped(model, folder if folder is not None else getattr(state, "folder", None))
        object.__setattr__(model, "_mlxgp_wrapped", state)
    else:
        now = dict(tree_flatten(model.parameters()))
        if now.keys() != state.weights.keys():  # the module changed shape (e.g. mlx-lm LoRA layers)
            state = _Wrapped(model, state.folder)
            object.__setattr__(model, "_mlxgp_wrapped", state)
        else:
            changed = {k: v for k, v in now.items() if v is not state.weights[k]}
            if changed:
                state.model.set_parameters({k.removeprefix(state.prefix): v for k, v in changed.items()})
                state.weights.update(changed)
    pm = state.model
    extras = _extras(model)
    for k in pm.extra_keys():
        if k not in extras:
            del pm[k]
    for k, v in extras.items():
        pm[k] = v
    return pm


def write_back(module, names):
    """After training a wrapped mlx-lm module: the trained arrays `names` (parameters or extra parameters)
    go back into the module, so its own forward uses them."""
    if not is_mlx_module(module):
        return
    from mlx.utils import tree_unflatten

    state = module.__dict__["_mlxgp_wrapped"]
    params = state.model.parameters()
    p = state.prefix
    updates = [(p + n, params[n].astype(state.weights[p + n].dtype)) for n in names if p + n in state.weights]
    if updates:
        module.update(tree_unflatten(updates))
        state.weights.update(dict(updates))
    for n in names:
        if p + n not in state.weights and n in state.model:
            module[n] = state.model[n]
