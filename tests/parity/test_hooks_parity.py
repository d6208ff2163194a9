"""Hooks against transformers run live in the same test: residual injection vs a PyTorch forward hook
adding the same vector after the same decoder layer, the persona logit bias vs transformers' logits
plus alpha * lm_head(v), soft prompts vs generate(inputs_embeds=...), and steering-vector extraction
vs the mean difference of transformers' hidden_states."""
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

import tiny_models

LAYER = 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_models.make_tiny_model("llama", tmp_path_factory.mktemp("hooks_llama"))


def _vector(n, seed, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(n) * scale).astype(np.float32)


class _Injection:
    """A forward hook on model.model.layers[layer] adding alpha * v to its output. `positions`
    follows mlxgp: in generate(), the first forward is the prompt and later ones are generated."""

    def __init__(self, model, layer, v, alpha, positions="all"):
        self.v, self.alpha, self.positions, self.calls = torch.tensor(v), alpha, positions, 0
        self.handle = model.model.layers[layer].register_forward_hook(self)

    def __call__(self, module, args, output):
        first = self.calls == 0
        self.calls += 1
        if self.positions == "prompt" and not first or self.positions == "generated" and first:
            return output
        h = output[0] if isinstance(output, tuple) else output
        h = h + self.alpha * self.v
        return (h,) + tuple(output[1:]) if isinstance(output, tuple) else h

    def remove(self):
        self.handle.remove()


def _hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def _mlxgp_logits(run_mlxgp, model_path, ids, out, *extra):
    run_mlxgp("logits", "--model", model_path, "--input-ids", ",".join(map(str, ids)), "--dtype", "float32",
              "--out", out, *extra)
    return load_file(str(out))["logits"]


def _hf_greedy(model, ids, n, **kw):
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=n, eos_token_id=None, **kw)
    return out[0, len(ids):].tolist()


def _mlxgp_greedy(run_mlxgp_json, model_path, ids, n, *extra):
    out = run_mlxgp_json("generate", "--model", model_path, "--dtype", "float32", "--input-ids",
                         ",".join(map(str, ids)), "--max-new-tokens", n, "--ignore-eos", *extra)
    return out["sequences"][0]["token_ids"]


def test_residual_injection_logits_tiny(tiny, run_mlxgp, tmp_path):
    model, folder = tiny
    ids = np.random.default_rng(0).integers(3, model.config.vocab_size, 24).tolist()
    v = _vector(model.config.hidden_size, 1)
    save_file({"steering_vector": v}, str(tmp_path / "v.safetensors"))
    base = _hf_logits(model, ids)
    hook = _Injection(model, LAYER, v, 1.5)
    try:
        ref = _hf_logits(model, ids)
    finally:
        hook.remove()
    got = _mlxgp_logits(run_mlxgp, folder, ids, tmp_path / "l.safetensors", "--steer", tmp_path / "v.safetensors",
                        "--steer-layer", LAYER, "--steer-alpha", 1.5)
    diff = float(np.abs(got - ref).max())
    print(f"tiny llama residual injection, layer {LAYER}: max |diff| = {diff:.3e} "
          f"(the vector moves logits by {np.abs(ref - base).max():.2f})")
    assert np.abs(ref - base).max() > 0.1  # the injection is not a no-op
    assert diff <= 1e-4


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_residual_injection_greedy_default(positions, hf_default, default_gguf, run_mlxgp_json, tmp_path):
    model, tok = hf_default
    ids = tok("Write one sentence about the sea.").input_ids
    v = _vector(model.config.hidden_size, 2, scale=0.5)
    save_file({"steering_vector": v}, str(tmp_path / "v.safetensors"))
    hook = _Injection(model, 12, v, 4.0, positions)
    try:
        ref = _hf_greedy(model, ids, 24)
    finally:
        hook.remove()
    got = _mlxgp_greedy(run_mlxgp_json, default_gguf, ids, 24, "--steer", tmp_path / "v.safetensors",
                        "--steer-layer", 12, "--steer-alpha", 4.0, "--steer-positions", positions)
    plain = _hf_greedy(model, ids, 24)
    print(f"injection ({positions}): {sum(a == b for a, b in zip(got, ref))}/{len(ref)} tokens identical; "
          f"differs from unsteered at {sum(a != b for a, b in zip(ref, plain))} positions")
    assert got == ref


def test_residual_injection_logits_default(hf_default, default_gguf, run_mlxgp, tmp_path):
    model, tok = hf_default
    ids = tok("The weather today is").input_ids
    v = _vector(model.config.hidden_size, 3, scale=0.5)
    save_file({"steering_vector": v}, str(tmp_path / "v.safetensors"))
    hooks = [_Injection(model, layer, v, 2.0) for layer in (5, 20)]
    try:
        ref = _hf_logits(model, ids)
    finally:
        for h in hooks:
            h.remove()
    got = _mlxgp_logits(run_mlxgp, default_gguf, ids, tmp_path / "l.safetensors", "--steer",
                        tmp_path / "v.safetensors", "--steer-layer", "5,20", "--steer-alpha", 2.0)
    diff = float(np.abs(got - ref).max())
    print(f"SmolLM2 fp32 injection at layers 5,20: max |diff| = {diff:.3e}")
    assert diff <= 1e-3  # the unsteered default model itself matches to ~1e-4 (test_logits_parity)
    assert (got.argmax(-1) == ref.argmax(-1)).all()


@pytest.mark.parametrize("which", ["tiny", "default"])
def test_persona_logit_bias(which, tiny, hf_default, default_gguf, run_mlxgp, tmp_path):
    model, path = (tiny[0], tiny[1]) if which == "tiny" else (hf_default[0], default_gguf)
    ids = np.random.default_rng(4).integers(3, 400, 12).tolist()
    v = _vector(model.config.hidden_size, 5, scale=0.3)
    save_file({"steering_vector": v}, str(tmp_path / "v.safetensors"))
    with torch.no_grad():
        ref = _hf_logits(model, ids) + (-2.0) * model.lm_head(torch.tensor(v)).numpy()
    got = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / "l.safetensors", "--persona-bias",
                        tmp_path / "v.safetensors", "--persona-alpha", -2.0)
    diff = float(np.abs(got - ref).max())
    print(f"{which} persona logit bias: max |diff| = {diff:.3e}")
    assert diff <= (1e-4 if which == "tiny" else 1e-3)


@pytest.mark.parametrize("which", ["tiny", "default"])
def test_soft_prompt_generation(which, tiny, hf_default, default_gguf, run_mlxgp_json, tmp_path):
    model, path = (tiny[0], tiny[1]) if which == "tiny" else (hf_default[0], default_gguf)
    ids = [5, 17, 42, 99, 7] if which == "tiny" else hf_default[1]("Tell me a story").input_ids
    n_virtual, hidden = 4, model.config.hidden_size
    emb = model.get_input_embeddings().weight
    soft = (np.random.default_rng(6).standard_normal((n_virtual, hidden)) * float(emb.detach().std())).astype(np.float32)
    save_file({"soft_prompt": soft}, str(tmp_path / "soft.safetensors"))
    with torch.no_grad():
        embeds = torch.cat([torch.tensor(soft)[None], emb[torch.tensor([ids])]], 1)
        out = model.generate(inputs_embeds=embeds, attention_mask=torch.ones(1, embeds.shape[1], dtype=torch.long),
                             do_sample=False, max_new_tokens=20, eos_token_id=None)
    ref = out[0].tolist()  # with inputs_embeds only, generate() returns just the new tokens
    got = _mlxgp_greedy(run_mlxgp_json, path, ids, 20, "--soft-prompt", tmp_path / "soft.safetensors")
    plain = _mlxgp_greedy(run_mlxgp_json, path, ids, 20)
    print(f"{which} soft prompt: {sum(a == b for a, b in zip(got, ref))}/{len(ref)} tokens identical; "
          f"the soft prompt changes {sum(a != b for a, b in zip(got, plain))} of 20 tokens")
    assert got == ref


@pytest.mark.parametrize("positions", ["prompt", "generated"])
def test_soft_prompt_with_steering_positions(positions, tiny, run_mlxgp_json, tmp_path):
    """The prompt's positions include a soft prompt's virtual tokens: with 4 of them, the prompt's last 4
    tokens counted as generated (`generated` steered the first new token, `prompt` missed them; logits 37
    apart from transformers on the default model)."""
    model, path = tiny
    ids = [5, 17, 42, 99, 7, 63, 11]
    hidden = model.config.hidden_size
    emb = model.get_input_embeddings().weight
    soft = (np.random.default_rng(6).standard_normal((4, hidden)) * float(emb.detach().std())).astype(np.float32)
    save_file({"soft_prompt": soft}, str(tmp_path / "soft.safetensors"))
    v = _vector(hidden, 3)
    save_file({"steering_vector": v}, str(tmp_path / "v.safetensors"))
    hook = _Injection(model, LAYER, v, 2.0, positions)
    try:
        with torch.no_grad():
            embeds = torch.cat([torch.tensor(soft)[None], emb[torch.tensor([ids])]], 1)
            ref = model.generate(inputs_embeds=embeds, attention_mask=torch.ones(1, embeds.shape[1], dtype=torch.long),
                                 do_sample=False, max_new_tokens=16, eos_token_id=None)[0].tolist()
    finally:
        hook.remove()
    got = _mlxgp_greedy(run_mlxgp_json, path, ids, 16, "--soft-prompt", tmp_path / "soft.safetensors", "--steer",
                        tmp_path / "v.safetensors", "--steer-layer", LAYER, "--steer-alpha", 2.0, "--steer-positions",
                        positions)
    print(f"soft prompt + steering ({positions}): {sum(a == b for a, b in zip(got, ref))}/{len(ref)} tokens identical")
    assert got == ref


@pytest.mark.parametrize("positions", ["prompt", "generated"])
def test_logits_steering_positions(positions, tiny, run_mlxgp, tmp_path):
    """`mlxgp logits`: the ids after --prefill are generated positions (they were all prompt, so
    --steer-positions was ignored: `generated` gave the unsteered logits, exit 0)."""
    model, folder = tiny
    ids = np.random.default_rng(4).integers(3, model.config.vocab_size, 24).tolist()
    prefill = 16
    v = _vector(model.config.hidden_size, 1)
    save_file({"steering_vector": v}, str(tmp_path / "v.safetensors"))
    hook = _Injection(model, LAYER, v, 1.5, positions)
    rows = []
    try:
        with torch.no_grad():  # the prefill in one forward, then one id at a time on its cache, as mlxgp runs them
            r = model(torch.tensor([ids[:prefill]]), use_cache=True)
            rows.append(r.logits[0, -1])
            for t in ids[prefill:-1]:
                r = model(torch.tensor([[t]]), past_key_values=r.past_key_values, use_cache=True)
                rows.append(r.logits[0, -1])
    finally:
        hook.remove()
    ref = torch.stack(rows).numpy()
    got = _mlxgp_logits(run_mlxgp, folder, ids, tmp_path / "l.safetensors", "--prefill", prefill, "--steer",
                        tmp_path / "v.safetensors", "--steer-layer", LAYER, "--steer-alpha", 1.5, "--steer-positions",
                        positions)[prefill - 1:len(ids) - 1]
    diff = float(np.abs(got - ref).max())
    print(f"logits, steering {positions}: max |diff| = {diff:.3e}")
    assert diff <= 1e-4


def test_steer_extract_matches_hidden_states(tiny, run_mlxgp, tmp_path):
    model, folder = tiny
    rng = np.random.default_rng(8)
    # The tiny model has no tokenizer: prompts are given as ids through a tokenizer-free path.
    pos = [rng.integers(3, 500, n).tolist() for n in (5, 9, 7)]
    neg = [rng.integers(3, 500, n).tolist() for n in (6, 4)]

    def mean_last(prompts, layer, position):
        rows = []
        with torch.no_grad():
            for ids in prompts:
                hs = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[layer + 1][0]
                rows.append(hs[-1] if position == "last" else hs.mean(0))
        return torch.stack(rows).mean(0).numpy()

    for position in ("last", "mean"):
        ref = mean_last(pos, LAYER, position) - mean_last(neg, LAYER, position)
        (tmp_path / "pos.txt").write_text("\n".join(",".join(map(str, p)) for p in pos) + "\n")
        (tmp_path / "neg.txt").write_text("\n".join(",".join(map(str, p)) for p in neg) + "\n")
        run_mlxgp("steer", "extract", "--model", folder, "--positive-ids", tmp_path / "pos.txt", "--negative-ids",
                  tmp_path / "neg.txt", "--layer", LAYER, "--position", position, "--out", tmp_path / "v.safetensors")
        got = load_file(str(tmp_path / "v.safetensors"))["steering_vector"]
        diff = float(np.abs(got - ref).max())
        print(f"steer extract ({position}): max |diff| = {diff:.3e}, |v| = {np.linalg.norm(ref):.3f}")
        assert diff <= 1e-4


def test_steer_extract_text_prompts_default(hf_default, default_gguf, run_mlxgp, tmp_path):
    model, tok = hf_default
    pos = ["I love this, it is wonderful!", "What a great and happy day."]
    neg = ["I hate this, it is awful.", "What a terrible and sad day."]
    (tmp_path / "pos.txt").write_text("\n".join(pos) + "\n")
    (tmp_path / "neg.txt").write_text("\n".join(neg) + "\n")
    run_mlxgp("steer", "extract", "--model", default_gguf, "--dtype", "float32", "--positive", tmp_path / "pos.txt",
              "--negative", tmp_path / "neg.txt", "--layer", 10, "--out", tmp_path / "v.safetensors")
    got = load_file(str(tmp_path / "v.safetensors"))["steering_vector"]

    def mean_last(texts):
        with torch.no_grad():
            return torch.stack([model(torch.tensor([tok(t).input_ids]), output_hidden_states=True)
                                .hidden_states[11][0, -1] for t in texts]).mean(0).numpy()

    ref = mean_last(pos) - mean_last(neg)
    rel = float(np.abs(got - ref).max() / np.abs(ref).max())
    print(f"SmolLM2 steer extract, layer 10: max relative |diff| = {rel:.3e}")
    assert rel <= 1e-3


def test_hook_flag_errors(default_gguf, run_mlxgp, tmp_path):
    save_file({"steering_vector": np.zeros(7, np.float32)}, str(tmp_path / "bad.safetensors"))
    cases = [
        (["--steer", tmp_path / "bad.safetensors", "--steer-layer", 3], "[hooks]", "must have shape [576]"),
        (["--steer", tmp_path / "bad.safetensors"], "[cli]", "--steer needs --steer-layer"),
        (["--steer-alpha", 2], "[cli]", "--steer-alpha needs --steer"),
        (["--steer", tmp_path / "missing.safetensors", "--steer-layer", 1], "[load]", "missing.safetensors"),
    ]
    save_file({"steering_vector": np.zeros(576, np.float32)}, str(tmp_path / "ok.safetensors"))
    cases.append((["--steer", tmp_path / "ok.safetensors", "--steer-layer", 30], "[hooks]", "layer 30 is out of range"))
    # A layer named twice was steered once (two forward hooks on one layer add the vector twice).
    cases.append((["--steer", tmp_path / "ok.safetensors", "--steer-layer", "12,12"], "[hooks]",
                  "layer 12 is listed twice"))
    # A LoRA file with no adapters loaded as a silent no-op (save_lora never writes one).
    save_file({}, str(tmp_path / "empty_lora.safetensors"),
              metadata={"format": "mlxgp-lora",
                        "lora_config": '{"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj"]}'})
    cases.append((["--lora", tmp_path / "empty_lora.safetensors"], "[lora]", "holds no adapter tensors"))
    for extra, component, text in cases:
        p = run_mlxgp("logits", "--model", default_gguf, "--input-ids", "1,2", "--out", tmp_path / "x.safetensors",
                      *extra, check=False)
        assert p.returncode != 0 and component in p.stderr and text in p.stderr, (extra, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1
