"""train_step / loss_forward batch dicts as transformers users build them: {"input_ids", "attention_mask",
"labels"} on a tiny qwen3_moe with output_router_logits, against transformers' forward on the same
inputs (live): the loss and its load-balancing term over the real tokens only. Left padding and unknown
keys are refused in one line, never ignored."""
import json

import numpy as np
import pytest

AUX_COEF = 0.5


@pytest.fixture(scope="module")
def moe(tmp_path_factory):
    from tiny_models import make_tiny_model

    _, folder = make_tiny_model("qwen3_moe", tmp_path_factory.mktemp("tiny-moe"))
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(output_router_logits=True, router_aux_loss_coef=AUX_COEF)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def _right_padded(vocab):
    rng = np.random.default_rng(5)
    lengths, T = [16, 6], 16
    ids = np.zeros((len(lengths), T), dtype=np.int64)  # pad id 0: its positions are masked
    mask = np.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(3, vocab, n)
        mask[i, :n] = 1
    labels = np.where(mask == 1, ids, -100)
    return ids, mask, labels


def test_attention_mask_counts_the_real_tokens_as_transformers_does(mgp, moe):
    import torch
    import transformers

    ref = transformers.AutoModelForCausalLM.from_pretrained(moe, dtype=torch.float32).eval()
    ids, mask, labels = _right_padded(ref.config.vocab_size)
    with torch.no_grad():
        out = ref(torch.tensor(ids), attention_mask=torch.tensor(mask), labels=torch.tensor(labels))
    model, _ = mgp.load(str(moe), dtype="float32")
    batch = {"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "labels": labels.tolist()}
    loss, n = mgp.loss_forward(model, batch)
    # Without the mask the balancing statistics count the pads too: the loss must move beyond the tolerance.
    unmasked, _ = mgp.loss_forward(model, {k: v for k, v in batch.items() if k != "attention_mask"})
    step = mgp.train_step(model, batch, mgp.SGD(learning_rate=0.0))
    want = out.loss.item()
    print(f"loss with aux term: mlxgp {loss.item():.6f}, train_step {step['loss']:.6f}, transformers {want:.6f} "
          f"(aux {out.aux_loss.item():.6f}); without the mask {unmasked.item():.6f}")
    assert abs(loss.item() - want) <= 1e-5
    assert abs(step["loss"] - want) <= 1e-5
    assert int(n.item()) == int((labels[:, 1:] != -100).sum())
    assert abs(unmasked.item() - want) > 1e-4


def test_left_padding_and_unknown_keys_are_refused(mgp, moe):
    model, _ = mgp.load(str(moe), dtype="float32")
    ids = [[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]]
    with pytest.raises(Exception, match=r"\[loss\] attention_mask must mark right padding") as e:
        mgp.loss_forward(model, {"input_ids": ids, "attention_mask": [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]})
    assert "\n" not in str(e.value)
    with pytest.raises(Exception, match=r"\[loss\] attention_mask must hold only 0 and 1"):
        mgp.train_step(model, {"input_ids": ids, "attention_mask": [[1, 2, 1, 1, 1], [1] * 5]},
                       mgp.SGD(learning_rate=0.0))
    with pytest.raises(ValueError, match=r"\[train\] unknown batch key\(s\) 'token_type_ids'"):
        mgp.train_step(model, {"input_ids": ids, "token_type_ids": [[0] * 5] * 2}, mgp.SGD(learning_rate=0.0))
