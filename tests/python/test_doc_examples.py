"""The examples of docs/python.md, run as written there (only the model paths are pointed at test models),
each checked against a reference in the same test: transformers, or mlx-lm itself."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import torch

from conftest import CACHE, ROOT, mlx_lm_greedy

DOC = ROOT / "docs" / "python.md"


def doc_blocks():
    """{first comment line: code} of every ```python block in docs/python.md, and README.md's one as "README"."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    out = {b.splitlines()[0].lstrip("# ").strip(): b for b in blocks}
    (readme,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    out["README"] = readme
    return out


def run_block(title, capsys, **paths):
    """Runs the block whose title starts with `title`, with "path/to/X" -> paths[X]; returns its namespace."""
    blocks = doc_blocks()
    matches = [blocks[title]] if title in blocks else [code for t, code in blocks.items() if t.startswith(title)]
    assert len(matches) == 1, (title, list(doc_blocks()))
    code = matches[0]
    for name, value in paths.items():
        code = code.replace(f'"{name}"', repr(str(value)))
    assert "path/to/" not in code, code
    ns = {}
    exec(compile(code, f"docs/python.md: {title}", "exec"), ns)
    ns["printed"] = capsys.readouterr().out
    return ns


def test_every_block_is_tested():
    tested = {"README", "Basic usage", "Basic usage with a model and tokenizer loaded by mlx-lm", "Beam search", "Speculative",
              "Persona steering", "Training: a soft prompt", "Full fine-tuning", "Converting", "Distributed"}
    assert all(any(t.startswith(x) for x in tested) for t in doc_blocks()), list(doc_blocks())


def test_basic_usage(capsys, hf_default):
    ns = run_block("Basic usage", capsys)
    out, outs, model, tokenizer, cfg = ns["out"], ns["outs"], ns["model"], ns["tokenizer"], ns["cfg"]
    hf_tok = hf_default[1]
    # Reference: transformers' tokenizer on the same GGUF encodes the prompt and decodes the tokens alike.
    assert out["prompt_token_ids"] == hf_tok("The capital of France is")["input_ids"]
    assert out["text"] == hf_tok.decode(out["tokens"], skip_special_tokens=True)
    assert out["text"] in ns["printed"]
    # Seeded sampling is reproducible, and the batched result equals the single one.
    again = ns["generate"](model, tokenizer, "The capital of France is", cfg)
    assert again["tokens"] == out["tokens"] == outs[0]["tokens"]
    for o in outs:
        assert o["text"] == hf_tok.decode(o["tokens"], skip_special_tokens=True)


def test_readme_python(capsys, hf_default, tiny_hf_tok):
    """README's Python lines: beams and a list on the default model, then a model loaded by mlx-lm."""
    ns = run_block("README", capsys, **{"path/to/folder": tiny_hf_tok})
    hf_tok = hf_default[1]
    assert [o["text"] for o in ns["outs"]] == [hf_tok.decode(o["tokens"], skip_special_tokens=True)
                                               for o in ns["outs"]]
    ids = ns["tokenizer"].encode("Hello MLX parity")
    assert ns["out"]["tokens"] == mlx_lm_greedy(ns["model"], ids, 32)[:len(ns["out"]["tokens"])]


def test_basic_usage_with_mlx_lm(capsys, mgp, tiny_hf_tok):
    ns = run_block("Basic usage with a model", capsys, **{"path/to/hf-or-mlx-folder": tiny_hf_tok})
    out, model, tokenizer = ns["out"], ns["model"], ns["tokenizer"]
    assert type(model).__module__.startswith("mlx_lm.") and ns["printed"].strip().endswith("64")
    ref = mlx_lm_greedy(model, tokenizer.encode("Hello MLX parity"), 32)
    assert out["tokens"] == ref[:len(out["tokens"])]
    own_model, own_tok = mgp.load(str(tiny_hf_tok))
    own = mgp.generate(own_model, own_tok, "Hello MLX parity", ns["cfg"])
    assert own["tokens"] == out["tokens"], (own["tokens"], out["tokens"])


def legacy_beams(folder, prompt_ids, config):
    """transformers 4.56.2 (the last with constrained beam search) on the same folder."""
    legacy = CACHE / "hf-legacy"
    assert (legacy / "transformers").is_dir(), f"transformers 4.56.2 missing at {legacy}: run scripts/setup.sh"
    env = dict(os.environ, PYTHONPATH=str(legacy), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    req = {"model": str(folder), "cases": [{"prompt": prompt_ids, "config": config}]}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "parity" / "legacy_beam_reference.py")],
                          input=json.dumps(req), capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])[0]


def test_beam_search_and_constraints(capsys, tiny_hf_tok):
    ns = run_block("Beam search", capsys, default=tiny_hf_tok)
    out, tokenizer = ns["out"], ns["tokenizer"]
    word = tokenizer.encode(" Paris", add_special_tokens=False)
    ref = legacy_beams(tiny_hf_tok, out["prompt_token_ids"],
                       {"max_new_tokens": 16, "num_beams": 4, "num_return_sequences": 2, "force_words_ids": [word]})
    for seq, ref_seq, ref_score in zip(out["sequences"], ref["sequences"], ref["scores"]):
        toks = seq["token_ids"]
        assert toks == ref_seq[:len(toks)]
        assert abs(seq["score"] - ref_score) < 1e-4
        assert any(toks[i:i + len(word)] == word for i in range(len(toks)))


def test_speculative(capsys, tiny_hf_tok):
    """Greedy speculative decoding with the model as its own draft: mlx-lm's greedy tokens, every draft
    accepted."""
    from mlx_lm import load

    ns = run_block("Speculative", capsys, default=tiny_hf_tok, **{"path/to/draft": tiny_hf_tok})
    out = ns["out"]
    ref = mlx_lm_greedy(load(str(tiny_hf_tok))[0], out["prompt_token_ids"], 64)
    assert out["tokens"] == ref[:len(out["tokens"])]
    sp = out["speculative"]
    assert sp["drafted_tokens"] > 0 and sp["accepted_tokens"] == sp["drafted_tokens"]


def test_persona_steering(capsys, hf_default):
    """Residual injection at block 12 and the persona logit bias, against the same edits in transformers:
    a forward hook on model.layers[12] and a logits processor adding 1.2 * lm_head(v)."""
    import mlx.core as mx
    from transformers import LogitsProcessorList

    ns = run_block("Persona steering", capsys)
    out, model = ns["out"], ns["model"]
    assert ns["printed"].strip().endswith("576")
    hf_model, _ = hf_default
    tv = torch.tensor(np.array(model["_persona_v"].astype(mx.float32)))

    def add_v(_module, _inputs, output):
        if isinstance(output, tuple):
            return (output[0] + 4.0 * tv,) + tuple(output[1:])
        return output + 4.0 * tv

    bias = 1.2 * (hf_model.lm_head.weight @ tv)

    class Bias:
        def __call__(self, input_ids, scores):
            return scores + bias

    handle = hf_model.model.layers[12].register_forward_hook(add_v)
    try:
        ids = out["prompt_token_ids"]
        with torch.no_grad():
            ref = hf_model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False, pad_token_id=0,
                                    logits_processor=LogitsProcessorList([Bias()]))[0, len(ids):].tolist()
    finally:
        handle.remove()
    assert out["tokens"] == ref[:len(out["tokens"])], (out["tokens"], ref)


def test_training_soft_prompt_on_mlx_lm(capsys, mgp, tiny_hf_tok):
    """Three AdamW steps; the soft prompt is back on the module. Reference: mlx-lm's forward over
    [soft prompt; token embeddings] gives the loss train_step reports (one more step at learning rate 0)."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim

    ns = run_block("Training: a soft prompt", capsys, **{"path/to/hf-or-mlx-folder": tiny_hf_tok})
    model, r, batch, pad_id = ns["model"], ns["r"], ns["batch"], ns["pad_id"]
    soft = model["_soft_prompt"]
    moments = ns["opt"].state["_soft_prompt"]
    assert soft.shape == (8, 64) and mx.all(mx.isfinite(soft)).item()  # trained: finite, non-zero moments
    assert all(mx.all(mx.isfinite(moments[k])).item() and float(mx.abs(moments[k]).max()) > 0 for k in ("m", "v"))
    assert r["loss_scale"] == 1024.0 and ns["opt"].state["step"].item() == 3
    check = mgp.train_step(model, batch, optim.SGD(learning_rate=0.0), mgp.TrainingConfig(trainable=["_soft_prompt"]),
                           hooks=[mgp.SoftPromptHook(n_virtual=8, param_key="_soft_prompt")], pad_id=pad_id)
    tokens = batch["tokens"]
    h = mx.concatenate([mx.broadcast_to(soft[None], (tokens.shape[0], 8, 64)), model.model.embed_tokens(tokens)], 1)
    logits = model(tokens, input_embeddings=h)[:, 8:-1]
    targets = tokens[:, 1:]
    mask = targets != pad_id
    ref = ((nn.losses.cross_entropy(logits, targets) * mask).sum() / mask.sum()).item()
    assert check["n_tokens"] == int(mask.sum().item()) and abs(check["loss"] - ref) < 1e-4, (check, ref)


def test_full_fine_tuning(capsys, tiny_hf_tok):
    """The first step's loss and the parameters after it, against torch.optim.AdamW on transformers."""
    import mlx.core as mx
    import transformers

    ns = run_block("Full fine-tuning", capsys, **{"path/to/hf-or-mlx-folder": tiny_hf_tok})
    model, r, batch = ns["model"], ns["r"], ns["batch"]
    hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_hf_tok, dtype=torch.float32)
    topt = torch.optim.AdamW(hf.parameters(), lr=1e-4)
    t = torch.tensor(np.array(batch)).long()
    loss = hf(input_ids=t, labels=t).loss
    loss.backward()
    topt.step()
    assert abs(r["loss"] - loss.item()) < 1e-4
    params = model.parameters()
    worst = max(float(np.abs(np.array(params[n]) - p.detach().numpy()).max()) for n, p in hf.named_parameters())
    assert worst < 1e-5, worst
    assert isinstance(ns["loss_forward"](model, batch)[0], mx.array)


def test_distributed_block_alone(capsys, mgp, tiny_hf_tok):
    """Without a launcher the block runs as a group of one: mlx-lm's greedy tokens, and the step of
    train_step without a group (tests/python/test_distributed_api.py runs two ranks)."""
    import mlx.core as mx
    from mlx_lm import load as mlx_lm_load

    ns = run_block("Distributed", capsys,
                   **{"path/to/hf-or-mlx-folder": tiny_hf_tok, "path/to/float-folder": tiny_hf_tok})
    assert ns["group"].size() == 1
    lm_model, lm_tok = mlx_lm_load(str(tiny_hf_tok))
    ref = mlx_lm_greedy(lm_model, lm_tok.encode("Hello MLX parity"), 16)
    assert ns["out"]["tokens"] == ref[:len(ns["out"]["tokens"])]
    plain, _ = mgp.load(str(tiny_hf_tok))
    r = mgp.train_step(plain, ns["batch"], mgp.SGD(learning_rate=1e-2), mgp.TrainingConfig())
    assert r["loss"] == ns["r"]["loss"]
    a, b = plain.parameters(), ns["trained"].parameters()
    assert all(mx.array_equal(a[k], b[k]).item() for k in a)


def test_convert(capsys, mgp, tiny_hf_tok, tmp_path):
    """The converted 4-bit folder: mlx-lm loads it and decodes the tokens mlxgp decodes from it."""
    from mlx_lm import load

    ns = run_block("Converting", capsys, **{"path/to/hf-folder": tiny_hf_tok, "path/to/mlx-4bit": tmp_path / "q4",
                                            "path/to/mlx-mxfp4": tmp_path / "mxfp4"})
    assert ns["mode"] == "mxfp4"
    model, tok = load(str(tmp_path / "q4"))
    ids = tok.encode("The capital of France is")
    ours = mgp.generate(*mgp.load(str(tmp_path / "q4")), ids, max_tokens=16)["tokens"]
    assert ours == mlx_lm_greedy(model, ids, 16)[:len(ours)]
