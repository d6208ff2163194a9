"""Distributed runs on MLX's own distributed layer (docs/distributed.md), started by `mlx.launch` or
`mpirun`: distributed_init() joins the launcher's group with a bounded wait, shard_model() splits a model
for tensor-parallel generation, and TrainingConfig(group=...) makes train_step data parallel."""
import math

from . import _core
from ._checks import GROUP, check


def distributed_init(timeout=None):
    """The mlx.core.distributed.Group of every rank the launcher started (size 1 without a launcher).
    A rank that cannot reach the others raises [distributed] after `timeout` seconds (default:
    MLXGP_DISTRIBUTED_TIMEOUT, else 60) instead of waiting for ever."""
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
                or not 0 < timeout <= 86400:
            raise ValueError(f"[distributed] timeout must be a number of seconds in (0, 86400], got {timeout!r}")
        timeout = float(timeout)
    return _core.distributed_init(timeout)


def shard_model(model, group):
    """Tensor parallelism: keeps this rank's share of every layer's attention heads and MLP features, the
    partial outputs summed over `group`; every rank then computes the same logits, so generate() gives every
    rank the same tokens (rank 0 usually prints). For models from mlx_gen_parity.load."""
    if not isinstance(model, _core.Model):
        raise TypeError(f"[distributed] shard_model takes a model from mlx_gen_parity.load, got {type(model).__name__} "
                        "(an mlx-lm model shards itself with model.shard(group))")
    _core.shard_model(model, check("distributed", "group", group, GROUP))
