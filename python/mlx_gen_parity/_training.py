"""Training from Python: the project's AdamW / SGD (torch.optim semantics, float32 masters) or any
mlx.optimizers.Optimizer, train_step, and the losses. Batches are [B, T] token arrays or dicts with
tokens or input_ids (+ labels / loss_mask). Models may be mlxgp's or mlx-lm's (mlx_gen_parity.interop)."""
import mlx.core as mx
import mlx.optimizers as optim

from . import _core
from ._core import TrainingConfig
from .interop import as_model, write_back


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
        super().__init__(_core.make_adamw(float(learning_rate), float(betas[0]), float(betas[1]), float(eps),
                                          float(weight_decay), schedule, int(warmup_steps), int(total_steps)))


class SGD(_Optimizer):
    """torch.optim.SGD."""

    def __init__(self, learning_rate=1e-2, momentum=0.0, weight_decay=0.0, nesterov=False, schedule="constant",
                 warmup_steps=0, total_steps=0):
        super().__init__(_core.make_sgd(float(learning_rate), float(momentum), float(weight_decay), bool(nesterov),
                                        schedule, int(warmup_steps), int(total_steps)))


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
    return _rows(ids, mx.int32), _rows(labels, mx.int32), _rows(mask), _rows(attention, mx.int32)


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


def loss_forward(model, batch, label_smoothing=0.0, pad_id=None):
    """The model's mean next-token loss over the counted positions: (loss, n_tokens) scalar arrays."""
    ids, labels, mask, attention = _batch(batch)
    return _core.loss_forward(as_model(model), ids, labels, mask, float(label_smoothing), pad_id, attention)


def xent_loss(logits, targets, label_smoothing=0.0, ignore_index=-100):
    """torch cross_entropy(reduction="mean") semantics: (loss, n_tokens) scalar arrays."""
    return _core.xent_loss(logits, _array(targets, mx.int32), float(label_smoothing), int(ignore_index))


def add_lora(model, rank=8, alpha=16.0, dropout=0.0, target_modules=("q_proj", "v_proj"), seed=0):
    """peft-style LoRA adapters on the matching linears; returns the trainable tensor names."""
    return _core.add_lora(as_model(model), int(rank), float(alpha), float(dropout), list(target_modules), int(seed))
