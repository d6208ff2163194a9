"""Training from Python: the project's AdamW / SGD (torch.optim semantics, float32 masters) or any
mlx.optimizers.Optimizer, train_step, and the losses. Batches are [B, T] token arrays or dicts with
tokens or input_ids (+ labels / loss_mask). Models may be mlxgp's or mlx-lm's (mlx_gen_parity.interop)."""
import math
import numbers
import struct

import mlx.core as mx
import mlx.optimizers as optim

from . import _core
from ._checks import ARRAY, BOOL, GROUP, HOOKS, INT, NONE, NUMBER, STR, STRS, Kind, check, checked
from .interop import as_model, write_back


class TrainingConfig(_core.TrainingConfig):
    __doc__ = _core.TrainingConfig.__doc__

    # A subclass, as nanobind constructs through its own init: the check cannot sit in front of it.
    @checked("train", dtype=STR, label_smoothing=NUMBER, max_grad_norm=NUMBER, loss_scale_value=NUMBER,
             trainable=STRS, group=GROUP | NONE)
    def __init__(self, dtype="float32", label_smoothing=0.0, max_grad_norm=0.0, loss_scale=None,
                 loss_scale_value=65536.0, trainable=(), group=None):
        super().__init__(dtype, label_smoothing, max_grad_norm, loss_scale, loss_scale_value, list(trainable), group)


def _float32(x):
    """x as the float32 the optimizer computes with (1e39 is inf there)."""
    try:
        return struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def _hyper(opt, name, value, what, ok):
    """A hyper-parameter, refused as torch.optim refuses it (and when not finite in float32), in one line."""
    check("train", f"{opt} {name}", value, NUMBER)
    x = float(value)
    if not (math.isfinite(_float32(x)) and ok(_float32(x))):
        raise ValueError(f"[train] {opt} {name} must be {what}, got {value!r}")
    return x


def _schedule(opt, schedule, warmup_steps, total_steps):
    check("train", f"{opt} schedule", schedule, STR)
    for name, n in (("warmup_steps", warmup_steps), ("total_steps", total_steps)):
        check("train", f"{opt} {name}", n, INT)
        if n < 0:
            raise ValueError(f"[train] {opt} {name} must be >= 0, got {n!r}")
    return schedule, int(warmup_steps), int(total_steps)


class _Optimizer:
    def __init__(self, state):
        self._state = state

    @property
    def steps(self):
        return self._state.steps

    def masters(self):
        """The float32 master copies of the trained tensors (after the first step)."""
        return self._state.masters()


class AdamW(_Optimizer):
    """torch.optim.AdamW; schedule "constant" | "cosine" | "linear" (warm-up, then decay to 0 at total_steps)."""

    def __init__(self, learning_rate=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, schedule="constant",
                 warmup_steps=0, total_steps=0):
        lr = _hyper("AdamW", "learning_rate", learning_rate, "a finite number >= 0", lambda x: x >= 0)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"[train] AdamW betas must be a pair of numbers, got {betas!r}")
        b1, b2 = (_hyper("AdamW", f"betas[{i}]", b, "in [0, 1)", lambda x: 0 <= x < 1) for i, b in enumerate(betas))
        eps = _hyper("AdamW", "eps", eps, "a finite number > 0", lambda x: x > 0)
        wd = _hyper("AdamW", "weight_decay", weight_decay, "a finite number >= 0", lambda x: x >= 0)
        super().__init__(_core.make_adamw(lr, b1, b2, eps, wd, *_schedule("AdamW", schedule, warmup_steps,
                                                                           total_steps)))


class SGD(_Optimizer):
    """torch.optim.SGD."""

    def __init__(self, learning_rate=1e-2, momentum=0.0, weight_decay=0.0, nesterov=False, schedule="constant",
                 warmup_steps=0, total_steps=0):
        lr = _hyper("SGD", "learning_rate", learning_rate, "a finite number >= 0", lambda x: x >= 0)
        momentum = _hyper("SGD", "momentum", momentum, "a finite number >= 0", lambda x: x >= 0)
        wd = _hyper("SGD", "weight_decay", weight_decay, "a finite number >= 0", lambda x: x >= 0)
        check("train", "SGD nesterov", nesterov, BOOL)
        super().__init__(_core.make_sgd(lr, momentum, wd, nesterov, *_schedule("SGD", schedule, warmup_steps,
                                                                               total_steps)))


def _array(x, dtype=None):
    if x is None:
        return None
    a = x if isinstance(x, mx.array) else mx.array(x)
    return a.astype(dtype) if dtype is not None and a.dtype != dtype else a


_BATCH_KEYS = ("tokens", "input_ids", "labels", "loss_mask", "attention_mask")


def _batch(batch):
    attention = None
    if isinstance(batch, dict):
        if ("input_ids" in batch) == ("tokens" in batch):
            raise ValueError("[train] a batch dict needs exactly one of tokens and input_ids")
        unknown = sorted(set(batch) - set(_BATCH_KEYS))
        if unknown:  # refused, never ignored (a tokenizer's token_type_ids, position_ids, ...)
            raise ValueError(f"[train] unknown batch key(s) {', '.join(map(repr, unknown))} (supported: "
                             f"{', '.join(_BATCH_KEYS)})")
        ids = batch["input_ids"] if "input_ids" in batch else batch["tokens"]
        labels, mask, attention = batch.get("labels"), batch.get("loss_mask"), batch.get("attention_mask")
    elif isinstance(batch, (tuple, list)) and len(batch) in (2, 3) and not isinstance(batch[0], int):
        ids, labels, mask = (list(batch) + [None])[:3]
    else:
        ids, labels, mask = batch, None, None
    # Not cast: the library refuses float or bool ids and labels rather than truncate them.
    return _rows(ids), _rows(labels), _rows(mask), _rows(attention)


def _rows(x, dtype=None):
    """x as an mx.array of [B, T] rows (one row given alone becomes [1, T]); None stays None."""
    a = _array(x, dtype)
    return a[None] if a is not None and a.ndim == 1 else a


def _train_state(opt):
    """The TrainState behind `opt`: ours, or one kept on an mlx.optimizers optimizer between calls."""
    if isinstance(opt, _Optimizer):
        return opt._state
    if isinstance(opt, optim.Optimizer):
        state = opt.__dict__.get("_mlxgp_state")
        if state is None:
            state = _core.make_python_optimizer(opt)
            opt._mlxgp_state = state
        return state
    raise TypeError(f"[train] the optimizer must be mlx_gen_parity.AdamW / SGD or an mlx.optimizers.Optimizer, "
                    f"got {type(opt).__name__}")


_CONFIG = Kind("a TrainingConfig", lambda v: isinstance(v, _core.TrainingConfig))


@checked("train", cfg=_CONFIG | NONE, hooks=HOOKS | NONE, pad_id=INT | NONE)
def train_step(model, batch, opt, cfg=None, hooks=None, pad_id=None):
    """One optimizer step of `opt` on `batch`. `opt` is the project's AdamW / SGD or any
    mlx.optimizers.Optimizer (its apply_gradients() updates the float32 masters; it keeps its own state and
    learning rate); either keeps its state between calls. Batches: a [B, T] token array, or a dict with
    `tokens` / `input_ids` (labels = the tokens shifted, pad_id masked) and optional labels / loss_mask /
    attention_mask (right padding only; as in transformers it marks the real tokens for the MoE
    load-balancing loss and does not change the counted targets). Other keys are refused.
    Trains cfg.trainable (default: LoRA adapters when present, else every float parameter). `hooks` are
    attached for this step (e.g. a SoftPromptHook). An mlx-lm model gets the trained arrays back.
    Returns {loss, n_tokens, grad_norm, skipped, loss_scale, lr}."""
    ids, labels, mask, attention = _batch(batch)
    state = _train_state(opt)
    pm = as_model(model)
    r = _core.train_step(pm, ids, labels, mask, state, cfg if cfg is not None else TrainingConfig(),
                         list(hooks or []), pad_id, attention)
    if isinstance(opt, optim.Optimizer):
        r["lr"] = float(opt.learning_rate)
    write_back(model, list(state.masters().keys()))
    return r


@checked("loss", label_smoothing=NUMBER, pad_id=INT | NONE)
def loss_forward(model, batch, label_smoothing=0.0, pad_id=None):
    """The model's mean next-token loss over the counted positions: (loss, n_tokens) scalar arrays."""
    ids, labels, mask, attention = _batch(batch)
    return _core.loss_forward(as_model(model), ids, labels, mask, float(label_smoothing), pad_id, attention)


@checked("loss", logits=ARRAY, label_smoothing=NUMBER, ignore_index=INT)
def xent_loss(logits, targets, label_smoothing=0.0, ignore_index=-100):
    """torch cross_entropy(reduction="mean") semantics: (loss, n_tokens) scalar arrays. Targets are class
    indices in [0, classes) or ignore_index; others are refused, as torch refuses them."""
    targets = _array(targets)  # not cast: float targets are refused, not truncated
    return _core.xent_loss(logits, targets, float(label_smoothing), int(ignore_index))


_SEED = Kind("a whole number >= 0", lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and
             0 <= v < 2**64)


@checked("lora", rank=INT, alpha=NUMBER, dropout=NUMBER, target_modules=STRS, seed=_SEED)
def add_lora(model, rank=8, alpha=16.0, dropout=0.0, target_modules=("q_proj", "v_proj"), seed=0):
    """peft-style LoRA adapters on the matching linears; returns the trainable tensor names."""
    return _core.add_lora(as_model(model), int(rank), float(alpha), float(dropout), list(target_modules), int(seed))
