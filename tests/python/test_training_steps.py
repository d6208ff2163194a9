"""train_step and loss_forward across calls and on bad input, each test against the reference it names:
what a call asks for is applied or refused in one line, never ignored or truncated."""
import math

import numpy as np
import pytest

IDS = [[1, 5, 9, 13, 7, 21, 3, 11]]


def _torch_loss(folder, label_smoothing):
    import torch
    import torch.nn.functional as F
    import transformers

    m = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = torch.tensor(IDS)
    with torch.no_grad():
        logits = m(ids).logits[0, :-1]
    return F.cross_entropy(logits, ids[0, 1:], label_smoothing=label_smoothing).item()


def test_a_later_config_applies_to_its_step(mgp, tiny_llama):
    import mlx.core as mx

    model, _ = mgp.load(tiny_llama, dtype="float32")
    opt = mgp.SGD(learning_rate=0.0)  # the weights never move: every step sees transformers' weights
    batch = mx.array(IDS)
    r1 = mgp.train_step(model, batch, opt, mgp.TrainingConfig())
    r2 = mgp.train_step(model, batch, opt, mgp.TrainingConfig(label_smoothing=0.3, loss_scale=8.0))
    r3 = mgp.train_step(model, batch, opt, mgp.TrainingConfig(label_smoothing=0.3, loss_scale=8.0))
    assert abs(r1["loss"] - _torch_loss(tiny_llama, 0.0)) < 1e-5
    assert abs(r2["loss"] - _torch_loss(tiny_llama, 0.3)) < 1e-5 and r2["loss"] != r1["loss"]
    assert r1["loss_scale"] == 1.0 and r2["loss_scale"] == 8.0 and r3["loss_scale"] == 8.0
    # The compute dtype and the trained tensors belong to the run: refused in one line.
    with pytest.raises(ValueError, match=r"^\[train\] the compute dtype cannot change during a run"):
        mgp.train_step(model, batch, opt, mgp.TrainingConfig(dtype="bf16"))
    with pytest.raises(ValueError, match=r"^\[train\] the trainable tensors cannot change during a run"):
        mgp.train_step(model, batch, opt, mgp.TrainingConfig(trainable=["model.norm.weight"]))
    assert opt.steps == 3


@pytest.mark.parametrize("batch, message", [
    ([[1.0, 5.0, 9.0]], "[loss] input_ids must be integers"),
    ([[1, 5.5, 9]], "[loss] input_ids must be integers"),
    ({"tokens": [[1, 5, 9]], "labels": [[1.9, 5.0, 9.0]]}, "[loss] labels must be integer token ids"),
    ([[1, 2**32 + 5, 9]], "[loss] input_ids hold token id 4294967301, outside the vocabulary"),
])
def test_ids_that_are_not_int32_integers_are_refused(mgp, tiny_llama, batch, message):
    import mlx.core as mx

    model, _ = mgp.load(tiny_llama, dtype="float32")
    as_mx = (lambda b: {k: mx.array(v) for k, v in b.items()}) if isinstance(batch, dict) else mx.array
    for given in (batch, as_mx(batch)):
        for call in (lambda: mgp.train_step(model, given, mgp.SGD(learning_rate=1e-3)),
                     lambda: mgp.loss_forward(model, given)):
            with pytest.raises(ValueError) as e:
                call()
            assert str(e.value).startswith(message) and "\n" not in str(e.value), str(e.value)


def test_mlx_optimizer_update_to_non_finite_weights_is_undone(mgp, tiny_llama):
    import mlx.core as mx
    import mlx.optimizers as optim

    model, _ = mgp.load(tiny_llama, dtype="float32")
    before = {k: np.array(v) for k, v in model.parameters().items()}
    opt = optim.Adam(learning_rate=1e-3)
    batch = mx.array(IDS)
    mgp.train_step(model, batch, opt)  # a good step first: the optimizer has moments to keep
    after_one = {k: np.array(v) for k, v in model.parameters().items()}
    state = {k: (np.array(v["m"]), np.array(v["v"])) for k, v in opt.state.items() if isinstance(v, dict)}
    assert any(not np.array_equal(before[k], after_one[k]) for k in before)
    opt.learning_rate = float("nan")
    with pytest.raises(ValueError, match=r"^\[train\] the update at step 2 makes weights non-finite"):
        mgp.train_step(model, batch, opt)
    assert all(np.array_equal(after_one[k], np.array(v)) for k, v in model.parameters().items())
    assert int(opt.state["step"]) == 1
    assert all(np.array_equal(m, np.array(opt.state[k]["m"])) and np.array_equal(v, np.array(opt.state[k]["v"]))
               for k, (m, v) in state.items())
    opt.learning_rate = 1e-3
    r = mgp.train_step(model, batch, opt)
    assert math.isfinite(r["loss"]) and int(opt.state["step"]) == 2
    assert all(mx.all(mx.isfinite(v)).item() for v in model.parameters().values())


def test_glm4_moe_routing_bias_is_a_buffer_never_trained(mgp, tmp_path):
    """transformers keeps glm4_moe's e_score_correction_bias as a buffer: the default (full) trainable set leaves it
    out, so an AdamW step with weight decay moves the router and leaves the bias as loaded; naming it is refused."""
    import sys
    from pathlib import Path

    import mlx.core as mx

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parity"))
    import tiny_models

    _, folder = tiny_models.make_tiny_model("glm4_moe", tmp_path / "glm4_moe")
    model, _ = mgp.load(str(folder), dtype="float32")
    name, router = "model.layers.1.mlp.gate.e_score_correction_bias", "model.layers.1.mlp.gate.weight"
    bias, weight = (np.array(model.parameters()[n]) for n in (name, router))
    mgp.train_step(model, mx.array(IDS), mgp.AdamW(learning_rate=1e-2, weight_decay=0.1))
    assert np.array_equal(np.array(model.parameters()[name]), bias)
    assert not np.array_equal(np.array(model.parameters()[router]), weight)
    with pytest.raises(ValueError, match=r"^\[train\] 'model.layers.1.mlp.gate.e_score_correction_bias' is a buffer"):
        mgp.train_step(model, mx.array(IDS), mgp.SGD(learning_rate=1e-3), mgp.TrainingConfig(trainable=[name]))
