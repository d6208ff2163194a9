"""The Python face of distributed runs (docs/distributed.md), two ranks under mlx.launch against the same
script in one process: distributed_init + shard_model give the single process's greedy tokens and
logits; TrainingConfig(group=...) makes train_step on each rank's half of the batch equal one
process's step on the whole batch."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tiny_models
from ring_ports import free_ports

SCRIPT = r'''
import json, sys
import mlx.core as mx
import numpy as np
import mlx_gen_parity as mg

folder, out = sys.argv[1], sys.argv[2]
group = mg.distributed_init(timeout=60)
model, tok = mg.load(folder)
mg.shard_model(model, group)
ids = [1, 17, 230, 45, 99, 310, 7, 402]
r = mg.generate(model, None, ids, max_new_tokens=12, eos_token_id=[], do_sample=False)
logits = np.array(model(mx.array([ids])))

trained, _ = mg.load(folder)
rows = np.random.default_rng(0).integers(3, 500, (4, 12))
opt = mg.SGD(learning_rate=0.1)
cfg = mg.TrainingConfig(group=group)
losses = [mg.train_step(trained, mx.array(rows[group.rank()::group.size()]), opt, cfg)["loss"] for _ in range(3)]
w = np.array(trained.parameters()["model.layers.0.mlp.down_proj.weight"])
if group.rank() == 0:
    np.savez(out, logits=logits, w=w)
    print(json.dumps({"tokens": r["tokens"], "losses": losses, "size": group.size()}))
'''



@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_models.make_tiny_model("qwen3", tmp_path_factory.mktemp("dist_py"))[1]


def test_python_tensor_and_data_parallel_match_one_process(folder, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    one = subprocess.run([sys.executable, str(script), str(folder), str(tmp_path / "one.npz")], capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    launch = Path(sys.executable).parent / "mlx.launch"
    two = subprocess.run([str(launch), "-n", "2", "--backend", "ring", "--starting-port", str(free_ports(2)), "--python",
                          sys.executable, str(script), str(folder), str(tmp_path / "two.npz")],
                         capture_output=True, text=True, timeout=300)
    assert "exited with code" not in two.stderr, two.stderr
    a, b = json.loads(one.stdout), json.loads(two.stdout.strip().splitlines()[-1])
    fa, fb = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    ldiff = float(np.abs(fa["logits"] - fb["logits"]).max())
    wdiff = float(np.abs(fa["w"] - fb["w"]).max())
    rel = max(abs(x - y) / abs(x) for x, y in zip(a["losses"], b["losses"]))
    print(f"python API, 2 ranks vs 1: logits max |diff| {ldiff:.2e}, greedy tokens identical "
          f"{sum(x == y for x, y in zip(a['tokens'], b['tokens']))}/{len(a['tokens'])}; 3 SGD steps: loss max rel "
          f"diff {rel:.2e}, weights max |diff| {wdiff:.2e}")
    assert (a["size"], b["size"]) == (1, 2)
    assert a["tokens"] == b["tokens"] and ldiff <= 1e-4
    assert rel <= 1e-5 and wdiff <= 1e-6


def test_python_distributed_errors(mgp, folder):
    with pytest.raises(ValueError, match=r"^\[distributed\] timeout must be"):
        mgp.distributed_init(timeout=float("nan"))
    group = mgp.distributed_init()  # no launcher: one process
    assert group.size() == 1
    with pytest.raises(TypeError, match=r"^\[distributed\] shard_model takes a model"):
        mgp.shard_model(object(), group)
    model, _ = mgp.load(str(folder))
    mgp.shard_model(model, group)  # a group of one leaves the model as it is
    assert mgp.TrainingConfig(group=group).group.size() == 1


SHARDED_SCRIPT = r'''
import json, sys
import mlx.core as mx
import mlx_gen_parity as mg

group = mg.distributed_init(timeout=60)
model, _ = mg.load(sys.argv[1])
mg.shard_model(model, group)
ids = [1, 17, 230, 45, 99, 310, 7, 402]
# Unseeded sampling: the ranks agree on rank 0's seed, so each returns the same tokens.
r = mg.generate(model, None, ids, max_new_tokens=10, eos_token_id=[], do_sample=True, temperature=2.0, top_k=0)
try:
    mg.train_step(model, mx.array([ids, ids]), mg.SGD(learning_rate=0.1), mg.TrainingConfig())
    refused = ""
except Exception as e:  # noqa: BLE001 - the message is what is checked
    refused = str(e)
print(json.dumps({"rank": group.rank(), "tokens": r["tokens"], "refused": refused}), flush=True)
'''


def test_python_sharded_model_samples_alike_and_refuses_training(folder, tmp_path):
    """On a shard_model'd model: unseeded generate samples the same tokens on every rank; train_step is refused
    (the backward pass through sharded layers would not sum the gradients over the ranks)."""
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED_SCRIPT)
    launch = Path(sys.executable).parent / "mlx.launch"
    p = subprocess.run([str(launch), "-n", "2", "--backend", "ring", "--starting-port", str(free_ports(2)), "--python",
                        sys.executable, str(script), str(folder)], capture_output=True, text=True, timeout=300)
    rows = sorted((json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")), key=lambda r: r["rank"])
    assert [r["rank"] for r in rows] == [0, 1], p.stdout + p.stderr
    assert rows[0]["tokens"] == rows[1]["tokens"], rows
    for r in rows:
        assert r["refused"].startswith("[train] a tensor-parallel (sharded) model cannot be trained"), r
