"""train_step and loss_forward across calls and on bad input, each test against the reference it names:
what a call asks for is applied or refused in one line, never ignored or truncated."""
import math

import numpy as np
import pytest

IDS = [[1, 5, 9, 13, 7, 21, 3, 11]]


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
