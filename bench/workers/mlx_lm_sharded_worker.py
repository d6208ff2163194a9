"""mlx-lm's tensor-parallel decode (model.shard(group), as its sharded_generate example) under mlx.launch:
prints `decode_tok_s X` on rank 0 (tokens after the first, which includes the prefill), or
`error ...` when the model cannot be sharded over the ranks."""
import sys
import time

import mlx.core as mx
from mlx_lm import load
from mlx_lm.generate import generate_step

path, prompt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
group = mx.distributed.init()
model, tok = load(path)
try:
    if group.size() > 1:
        model.shard(group)
    t0, count = None, 0
    for (token, _), i in zip(generate_step(mx.array(tok.encode(prompt)), model, max_tokens=n), range(n)):
        if i == 0:
            t0 = time.perf_counter()
        count += 1
    rate = (count - 1) / (time.perf_counter() - t0)
    if group.rank() == 0:
        print(f"decode_tok_s {rate:.2f}", flush=True)
except Exception as err:  # noqa: BLE001 - reported as the row's result
    if group.rank() == 0:
        print(f"error {type(err).__name__}: {str(err).splitlines()[0][:200]}", flush=True)
