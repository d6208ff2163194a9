"""Training against PyTorch run live in the same test: xent_loss vs F.cross_entropy, gradients of the
next-token loss vs torch autograd on the same transformers model, AdamW steps vs torch.optim.AdamW,
the loss trajectory, exact resume, and dynamic loss scaling on an injected overflow."""
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file, save_file

import tiny_models

B, T = 2, 16
# Adam's first updates are about lr * sign(g): for the few weights whose gradient is near eps (1e-8),
# fp32 summation-order noise between two autograd engines moves them by a fraction of lr. At 1e-4 that
# stays under the 1e-5 parameter tolerance; at 1e-3 one such weight differs by 7e-5 after one step.
LR_ADAMW = 1e-4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return {arch: tiny_models.make_tiny_model(arch, tmp_path_factory.mktemp(f"train_{arch}"))
            for arch in ("llama", "qwen3", "gemma2", "phi3", "olmo2", "granite", "mixtral", "qwen2_moe", "qwen3_moe",
                         "starcoder2", "gpt2", "gpt_oss", "glm4", "olmoe", "cohere", "phi", "glm4_moe",
                         "stablelm-parallel", "seed_oss", "exaone4", "gpt_neox", "arcee", "nemotron", "granitemoe",
                         "hunyuan_v1_dense", "deepseek_v2", "deepseek_v3", "glm4_moe_lite",
                         "dots1", "apertus", "llama4_text", "gpt_bigcode", "gpt_bigcode-mha", "olmo", "gemma4_text",
                         "gemma4_text-moe", "gemma4_text-e2b", "ernie4_5_moe", "hunyuan_v1_moe", "lfm2",
                         "lfm2_moe", "qwen3_next", "qwen3_5_text", "qwen3_5_moe_text")}


def _as_mlxgp_grads(arch, name, grad):
    """torch parameter -> {name in mlxgp's --dump-grads: gradient}. mlxgp writes transformers' checkpoint names
    (what save_pretrained writes and from_pretrained reads). transformers 5 keeps each MoE layer's experts fused
    in memory (experts.gate_up_proj [E, 2I, H], experts.down_proj [E, H, I]) but writes one tensor per expert
    (experts.E.{gate,up,down}_proj.weight; mixtral's block_sparse_moe.experts.E.{w1,w3,w2}.weight and its
    router block_sparse_moe.gate). gpt_oss's checkpoint keeps its fused layout (gate_up_proj [E, H, 2I]
    interleaved, down_proj [E, I, H], their biases): the names match as they are. granitemoe keeps its fused
    experts.gate_up_proj [E, 2I, H] / down_proj [E, H, I] and router.weight in memory and writes them as
    input_linear / output_linear / router.layer, the same layouts; gpt_neox's head is lm_head in memory and
    embed_out in its checkpoints; lfm2_moe's fused experts are written as feed_forward.experts.E.{w1,w3,w2}."""
    if arch == "gpt_neox" and name == "lm_head.weight":
        return {"embed_out.weight": grad}
    if arch == "granitemoe" and ".block_sparse_moe." in name:
        module = name.split(".block_sparse_moe.")[0] + ".block_sparse_moe."
        leaf = {"experts.gate_up_proj": "input_linear.weight", "experts.down_proj": "output_linear.weight",
                "router.weight": "router.layer.weight"}[name.split(".block_sparse_moe.")[1]]
        return {module + leaf: grad}
    if arch == "lfm2_moe":  # (its experts written as feed_forward.experts.E.w1 / w3 / w2)
        if ".feed_forward.experts." not in name:
            return {name: grad}
        module = name.split(".experts.")[0] + "."
    elif arch == "gpt_oss" or (".mlp.experts." not in name and not (arch == "mixtral" and name.endswith(".mlp.gate.weight"))):
        return {name: grad}
    else:
        module = name.split(".mlp.")[0] + (".block_sparse_moe." if arch == "mixtral" else ".mlp.")
    gate, up, down = ("w1", "w3", "w2") if arch in ("mixtral", "lfm2_moe") else ("gate_proj", "up_proj", "down_proj")
    if name.endswith("experts.gate_up_proj"):
        half = grad.shape[1] // 2
        out = {}
        for e in range(grad.shape[0]):
            out[f"{module}experts.{e}.{gate}.weight"] = grad[e, :half]
            out[f"{module}experts.{e}.{up}.weight"] = grad[e, half:]
        return out
    if name.endswith("experts.down_proj"):
        return {f"{module}experts.{e}.{down}.weight": grad[e] for e in range(grad.shape[0])}
    return {module + "gate.weight": grad}


def _data(path, vocab, n=8, seed=0):
    rng = np.random.default_rng(seed)
    rows = [rng.integers(3, vocab, T).tolist() for _ in range(n)]
    path.write_text("".join(json.dumps({"input_ids": r}) + "\n" for r in rows))
    return rows


def _train(run_mlxgp, folder, data, out, *extra):
    return run_mlxgp("train", "--model", folder, "--data", data, "--mode", "full", "--batch-size", B, "--seq-len", T,
                     "--no-shuffle", "--dtype", "float32", "--out", out, *map(str, extra))


def _batches(rows, steps):
    """The batches mlxgp takes with --no-shuffle: consecutive rows, wrapping around."""
    for s in range(steps):
        yield torch.tensor([rows[(s * B + i) % len(rows)] for i in range(B)])


def _fresh(model_folder):
    import transformers

    m = transformers.AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
    m.train()  # no dropout in these configs; train() only matters for parity of mode-dependent code
    return m


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35])
def test_xent_loss_matches_torch(smoothing, run_mlxgp, tmp_path):
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((64, 300)) * 3).astype(np.float32)
    logits[5, 7] = -1e9  # an effectively impossible class
    targets = rng.integers(0, 300, 64).astype(np.int32)
    targets[::7] = -100
    save_file({"logits": logits, "targets": targets}, str(tmp_path / "in.safetensors"))
    run_mlxgp("loss", "--in", tmp_path / "in.safetensors", "--label-smoothing", smoothing, "--out",
              tmp_path / "out.safetensors")
    got = load_file(str(tmp_path / "out.safetensors"))
    ref = F.cross_entropy(torch.tensor(logits), torch.tensor(targets, dtype=torch.long), ignore_index=-100,
                          label_smoothing=smoothing).item()
    rel = abs(float(got["loss"]) - ref) / abs(ref)
    print(f"xent label_smoothing={smoothing}: mlxgp {float(got['loss']):.8f} torch {ref:.8f} rel {rel:.2e}")
    assert int(got["n_tokens"]) == int((targets != -100).sum())
    assert rel <= 1e-6


# gemma2: soft-caps, sandwich norms, (1 + w) norms, sliding window; phi3: fused projections, LongRoPE;
# olmo2: output norms and whole-projection q/k norms; granite: the four multipliers; mixtral / qwen2_moe:
# gradients through the router's top-k weights and the gathered experts (and qwen2_moe's shared expert);
# starcoder2: LayerNorm weights and biases, biased projections; gpt2: learned positions, the tied wte, and
# the gradients written under transformers' names with the Conv1D ones [in, out]; gpt_oss: the sinks, the
# router's bias and the experts' biases through the clamped SwiGLU; glm4: interleaved partial RoPE, q/k/v biases,
# its four norms; olmoe: whole-projection q/k norms before unnormalised top-k experts; cohere: bias-free LayerNorms
# (per head on q and k), attention and MLP in parallel, the logit scale; phi: LayerNorms with biases in parallel
# blocks, partial RoPE, dense / fc1 / fc2 and the head's bias; glm4_moe: sigmoid-routed experts (the router's
# e_score_correction_bias is a buffer: neither side trains it) beside an ungated shared expert; stablelm-parallel: each
# head's own q / k LayerNorm (written under transformers' per-head names) in parallel blocks; seed_oss: o_proj's bias too;
# exaone4: post-sublayer norms with per-head q/k norms, windowed RoPE layers and a NoPE global one; gpt_neox: the
# per-head query_key_value rows, two norms of x in parallel blocks (gradients under gpt_neox.* names); arcee: the
# relu2 MLP under YaRN; nemotron: LayerNorm1P's (1 + w) and bias, half-rotary heads; granitemoe: granite's
# multipliers around top-2 experts, written as transformers' input_linear / output_linear / router.layer;
# hunyuan_v1_dense: q/k norms after RoPE; deepseek_v2 / v3: latent attention (kv_b_proj's gradient through the absorbed
# products) before group-limited softmax / sigmoid experts and shared ones; gpt_bigcode: one key/value head in the
# fused c_attn, learned positions; gpt_bigcode-mha: c_attn's rows per head (written back so); olmo: weightless
# LayerNorms (nothing to train there) and q / k / v clamped by clip_qkv (no gradient through a clamped value);
# gemma4_text: values that are the keys' projection, weightless value norms, proportional RoPE, the layer scalars (a
# buffer: neither side trains it); gemma4_text-moe: the router's scale and per_expert_scale and fused experts beside
# the MLP; gemma4_text-e2b: the per-layer input tables, projections and gates, and layers whose keys and values are an
# earlier layer's (the gradient reaches that layer's k_proj through both); ernie4_5_moe: interleaved RoPE, biases on
# every linear but the experts and on the tied head, softmax experts chosen with moe_statics' correction bias (which
# only picks experts: no gradient reaches it) beside a shared one; hunyuan_v1_moe: q/k norms after RoPE, a float32
# router, every layer's experts beside an ungated shared MLP; lfm2: gated short convolutions (in_proj, the depthwise
# kernel, out_proj) beside attention with per-head q / k norms; lfm2_moe: those blocks with sigmoid-routed experts chosen
# with expert_bias (which takes no gradient); qwen3_next / qwen3_5_text / qwen3_5_moe_text: gated delta nets (the
# projections, the depthwise kernel, A_log, dt_bias, the gated norm) beside gated attention, zero-centred norms, experts
# beside a sigmoid-gated shared expert.
@pytest.mark.parametrize("arch", ["llama", "qwen3", "gemma2", "phi3", "olmo2", "granite", "mixtral", "qwen2_moe",
                                  "starcoder2", "gpt2", "gpt_oss", "glm4", "olmoe", "cohere", "phi",
                                  "glm4_moe", "stablelm-parallel", "seed_oss", "exaone4",
                                  "gpt_neox", "arcee", "nemotron", "granitemoe", "hunyuan_v1_dense", "deepseek_v2",
                                  "deepseek_v3", "glm4_moe_lite", "dots1", "apertus", "llama4_text", "gpt_bigcode",
                                  "gpt_bigcode-mha", "olmo", "gemma4_text", "gemma4_text-moe", "gemma4_text-e2b",
                                  "ernie4_5_moe", "hunyuan_v1_moe", "lfm2", "lfm2_moe", "qwen3_next", "qwen3_5_text",
                                  "qwen3_5_moe_text"])
def test_gradients_match_torch_autograd(arch, tiny, run_mlxgp, tmp_path):
    model, folder = tiny[arch]
    rows = _data(tmp_path / "d.jsonl", model.config.vocab_size)
    _train(run_mlxgp, folder, tmp_path / "d.jsonl", tmp_path / "out", "--steps", 1, "--lr", 1e-3, "--dump-grads",
           tmp_path / "g.safetensors")
    got = load_file(str(tmp_path / "g.safetensors"))
    m = _fresh(folder)
    ids = next(_batches(rows, 1))
    m(ids, labels=ids).loss.backward()
    worst = 0.0
    refs = {}
    for name, p in m.named_parameters():
        if p.grad is not None:  # (ernie4_5_moe's e_score_correction_bias only picks experts: no gradient reaches it)
            refs.update(_as_mlxgp_grads(arch, name, p.grad.numpy()))
    assert set(got) == set(refs)
    for name, ref in refs.items():
        rel = float(np.abs(got[name] - ref).max() / max(np.abs(ref).max(), 1e-12))
        worst = max(worst, rel)
    print(f"{arch}: {len(got)} gradient tensors, max relative |diff| = {worst:.2e}")
    assert worst <= 1e-4


def _torch_adamw_run(folder, rows, steps, lr, wd, clip=None):
    m = _fresh(folder)
    opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=wd)
    losses = []
    for ids in _batches(rows, steps):
        opt.zero_grad()
        loss = m(ids, labels=ids).loss
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(m.parameters(), clip)
        opt.step()
        losses.append(loss.item())
    return m, losses


@pytest.mark.parametrize("arch", ["gpt_oss", "qwen3_moe", "mixtral", "glm4_moe", "gemma4_text-moe", "gemma4_text",
                                  "ernie4_5_moe"])
def test_moe_full_fine_tune_saves_what_transformers_reads(arch, tiny, run_mlxgp, tmp_path):
    """3 SGD steps of full fine-tuning on an MoE model: its model.safetensors holds transformers' checkpoint
    layout (gpt_oss's interleaved gate_up_proj and biases; gemma4_text's fused gate_up_proj / down_proj; one tensor
    per expert for the others, mixtral's w1 / w3 / w2), not mlxgp's stacked switch_mlp, and the buffers beside the
    trained weights (glm4_moe's e_score_correction_bias, gemma4_text's layer_scalar): from_pretrained reads every
    tensor of it with none missing, and the model it builds holds torch's SGD parameters. (SGD: AdamW's normalised step turns rounding-level gradients into
    lr-sized updates, which would hide nothing here but blur the comparison.)"""
    import transformers

    model, folder = tiny[arch]
    rows = _data(tmp_path / "d.jsonl", model.config.vocab_size)
    # gemma4_text's scores are q.k unscaled over unit-RMS q / k norms (sharp softmaxes): steps of 0.5 turn float32
    # rounding into 1e-3 parameter differences within three steps (0.8 moved), on both sides alike; 0.02 keeps the
    # comparison about the saved layout.
    lr = 0.02 if arch.startswith("gemma4") else 0.5
    _train(run_mlxgp, folder, tmp_path / "d.jsonl", tmp_path / "out", "--steps", 3, "--lr", lr, "--optimizer", "sgd")
    ref_model = _fresh(folder)
    opt = torch.optim.SGD(ref_model.parameters(), lr=lr)
    for ids in _batches(rows, 3):
        opt.zero_grad()
        ref_model(ids, labels=ids).loss.backward()
        opt.step()
    saved = tmp_path / "saved"
    saved.mkdir()
    shutil.copy(folder / "config.json", saved)
    shutil.copy(tmp_path / "out" / "model.safetensors", saved)
    loaded, info = transformers.AutoModelForCausalLM.from_pretrained(saved, dtype=torch.float32,
                                                                     output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    got = {n: p.detach().numpy() for n, p in loaded.named_parameters()}
    ref = {n: p.detach().numpy() for n, p in ref_model.named_parameters()}
    assert set(got) == set(ref)
    pdiff = max(float(np.abs(got[n] - ref[n]).max()) for n in ref)
    moved = max(float(np.abs(ref[n] - p.detach().numpy()).max()) for n, p in _fresh(folder).named_parameters())
    print(f"{arch} 3 SGD steps, read back by from_pretrained: max |param diff| = {pdiff:.2e} (the steps moved "
          f"them by up to {moved:.2e})")
    assert moved > 1e-2
    assert pdiff <= 1e-5


def test_adamw_steps_and_loss_trajectory_match_torch(tiny, run_mlxgp, tmp_path):
    model, folder = tiny["llama"]
    rows = _data(tmp_path / "d.jsonl", model.config.vocab_size)
    _train(run_mlxgp, folder, tmp_path / "d.jsonl", tmp_path / "out", "--steps", 20, "--lr", LR_ADAMW,
           "--weight-decay", 0.01, "--max-grad-norm", 1.0, "--log-json", tmp_path / "log.jsonl")
    ref_model, ref_losses = _torch_adamw_run(folder, rows, 20, LR_ADAMW, 0.01, clip=1.0)
    losses = [json.loads(l)["loss"] for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    got = load_file(str(tmp_path / "out" / "model.safetensors"))
    pdiff = max(float(np.abs(got[n] - p.detach().numpy()).max()) for n, p in ref_model.named_parameters())
    ldiff = max(abs(a - b) for a, b in zip(losses[:10], ref_losses[:10]))
    print(f"20 AdamW steps: max |param diff| = {pdiff:.2e}; first 10 losses max |diff| = {ldiff:.2e} "
          f"({ref_losses[0]:.4f} -> {ref_losses[9]:.4f})")
    assert len(losses) == 20
    assert ldiff <= 1e-4
    assert pdiff <= 1e-5


def test_resume_equals_uninterrupted_run(tiny, run_mlxgp, tmp_path):
    model, folder = tiny["llama"]
    _data(tmp_path / "d.jsonl", model.config.vocab_size, n=6)
    common = ["--lr", 1e-3, "--schedule", "cosine", "--warmup", 2]
    _train(run_mlxgp, folder, tmp_path / "d.jsonl", tmp_path / "full", "--steps", 8, *common)
    _train(run_mlxgp, folder, tmp_path / "d.jsonl", tmp_path / "half", "--steps", 8, "--save-every", 4,
           "--inject-overflow-at", 0, *common)  # writes checkpoint-4 then checkpoint-8
    # Simulate a run killed after step 4: keep only checkpoint-4, then resume.
    import shutil
    shutil.copytree(tmp_path / "half" / "checkpoint-4", tmp_path / "resumed" / "checkpoint-4")
    (tmp_path / "resumed" / "latest").write_text("checkpoint-4\n")
    _train(run_mlxgp, folder, tmp_path / "d.jsonl", tmp_path / "resumed", "--steps", 8, "--resume",
           tmp_path / "resumed", *common)
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a), "resumed run differs from the uninterrupted one"


@pytest.mark.parametrize("overflow_at", [2, 3])
def test_resume_after_a_skipped_step_equals_uninterrupted_run(overflow_at, tiny, run_mlxgp, tmp_path):
    """A skipped (overflow) step makes no update: the optimizer's bias correction and the schedule count
    updates, not steps, and the checkpoint (at step 3: after the skip, or right after it) carries both."""
    import shutil

    model, folder = tiny["llama"]
    _data(tmp_path / "d.jsonl", model.config.vocab_size, n=6)
    common = ["--steps", 6, "--lr", 1e-3, "--schedule", "cosine", "--warmup", 2, "--loss-scale", "dynamic",
              "--inject-overflow-at", overflow_at]
    _train(run_mlxgp, folder, tmp_path / "d.jsonl", tmp_path / "full", *common, "--log-json", tmp_path / "log.jsonl")
    assert [e["step"] for e in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines())
            if e["skipped"]] == [overflow_at]
    _train(run_mlxgp, folder, tmp_path / "d.jsonl", tmp_path / "half", *common, "--save-every", 3)
    shutil.copytree(tmp_path / "half" / "checkpoint-3", tmp_path / "resumed" / "checkpoint-3")
    (tmp_path / "resumed" / "latest").write_text("checkpoint-3\n")
    _train(run_mlxgp, folder, tmp_path / "d.jsonl", tmp_path / "resumed", *common, "--resume", tmp_path / "resumed")
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert all(np.array_equal(a[k], b[k]) for k in a), "resumed run differs from the uninterrupted one"


def _torch_fp16_overflows(folder, ids, scale):
    """torch GradScaler's test: the gradients of scale * (mean loss) in float16, finite or not."""
    import transformers

    m = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float16)
    m.train()
    (m(ids, labels=ids).loss.float() * scale).backward()
    return not all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_fp16_loss_scale_overflows_where_torch_gradscaler_does(tiny, run_mlxgp, tmp_path):
    """torch's GradScaler multiplies the mean loss by the scale; scaling the token sum instead overflowed
    float16 gradients at a scale n_tokens times smaller. Around torch's smallest overflowing power of two
    (a margin of 4x each way for the two engines' float16 rounding), mlxgp overflows exactly when torch does."""
    model, folder = tiny["llama"]
    rows = _data(tmp_path / "d.jsonl", model.config.vocab_size)
    ids = next(_batches(rows, 1))
    exponent = next((k for k in range(4, 64) if _torch_fp16_overflows(folder, ids, 2.0 ** k)), None)
    assert exponent is not None and exponent >= 8, exponent
    print(f"torch float16 gradients first overflow at scale 2^{exponent} ({B * (T - 1)} target tokens)")
    for scale, overflows in ((2.0 ** (exponent - 2), False), (2.0 ** (exponent + 2), True)):
        assert _torch_fp16_overflows(folder, ids, scale) == overflows
        p = run_mlxgp("train", "--model", folder, "--data", tmp_path / "d.jsonl", "--mode", "full", "--batch-size", B,
                      "--seq-len", T, "--no-shuffle", "--dtype", "float16", "--loss-scale", scale, "--steps", 1,
                      "--lr", 1e-4, "--out", tmp_path / f"out{scale}", check=False)
        assert (p.returncode != 0) == overflows, (scale, p.stderr)
        if overflows:
            assert "[train] the gradients are not finite at step 1" in p.stderr, p.stderr


def test_lora_dropout_changes_training_reproducibly(tiny, run_mlxgp, tmp_path):
    """--lora-dropout drops the adapters' input in training steps (peft's B(A(dropout(x)))): the adapters
    trained with it differ from those without, and the same seed reproduces them exactly."""
    model, folder = tiny["llama"]
    _data(tmp_path / "d.jsonl", model.config.vocab_size)

    def adapters(name, dropout, seed=0):
        run_mlxgp("train", "--model", folder, "--data", tmp_path / "d.jsonl", "--mode", "lora", "--batch-size", B,
                  "--seq-len", T, "--steps", 3, "--lr", 1e-2, "--lora-dropout", dropout, "--seed", seed,
                  "--out", tmp_path / name)
        return load_file(str(tmp_path / name / "adapters.safetensors"))

    plain, dropped, again = adapters("p", 0), adapters("d", 0.5), adapters("d2", 0.5)
    assert all(np.array_equal(dropped[k], again[k]) for k in dropped)
    assert max(float(np.abs(plain[k] - dropped[k]).max()) for k in plain if "lora_B" in k) > 1e-4


def test_dynamic_loss_scale_skips_injected_overflow(tiny, run_mlxgp, tmp_path):
    model, folder = tiny["llama"]
    _data(tmp_path / "d.jsonl", model.config.vocab_size)
    _train(run_mlxgp, folder, tmp_path / "d.jsonl", tmp_path / "out", "--steps", 6, "--lr", 1e-3, "--loss-scale",
           "dynamic", "--inject-overflow-at", 3, "--log-json", tmp_path / "log.jsonl")
    log = [json.loads(l) for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    skipped = [e["step"] for e in log if e["skipped"]]
    scales = [e["loss_scale"] for e in log]
    print(f"steps logged {len(log)}, skipped {skipped}, loss scales {scales}")
    assert skipped == [3]
    assert scales[3] == scales[2] * 0.5  # backed off after the overflow
    assert not any(e["skipped"] for e in log[3:]) and all(np.isfinite(e["loss"]) for e in log)


def test_training_errors(tiny, run_mlxgp, tmp_path):
    model, folder = tiny["llama"]
    (tmp_path / "bad.jsonl").write_text('{"input_ids": [1, 2, 3]}\n{"input_ids": [1, 2\n')
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "long.jsonl").write_text(json.dumps({"input_ids": list(range(3, 40))}) + "\n")
    (tmp_path / "oov.jsonl").write_text(json.dumps({"input_ids": [1, 99999]}) + "\n")
    (tmp_path / "float.jsonl").write_text('{"input_ids": [1, 2.5, 3]}\n')
    (tmp_path / "whole_float.jsonl").write_text('{"input_ids": [1, 2, 3]}\n{"input_ids": [1, 2.0, 3]}\n')
    (tmp_path / "bool.jsonl").write_text('{"input_ids": [1, true, 3]}\n')
    (tmp_path / "wrap.jsonl").write_text('{"input_ids": [1, 4294967301, 3]}\n')
    cases = [
        (tmp_path / "bad.jsonl", [], "[data]", "bad.jsonl:2: malformed JSON"),
        (tmp_path / "empty.jsonl", [], "[data]", "holds no training examples"),
        (tmp_path / "long.jsonl", [], "[data]", "more than --seq-len"),
        (tmp_path / "oov.jsonl", [], "[data]", "outside the vocabulary"),
        (tmp_path / "missing.jsonl", [], "[data]", "cannot read"),
        # Truncated, wrapped or bool ids would train on other tokens than the file holds.
        (tmp_path / "float.jsonl", [], "[data]", "float.jsonl:1: token id 2.5 is not an integer"),
        (tmp_path / "whole_float.jsonl", [], "[data]", "whole_float.jsonl:2: token id 2.0 is not an integer"),
        (tmp_path / "bool.jsonl", [], "[data]", "bool.jsonl:1: token id true is not an integer"),
        (tmp_path / "wrap.jsonl", [], "[data]", "wrap.jsonl:1: token id 4294967301 is outside the int32 range"),
        (tmp_path / "bad.jsonl", ["--mode", "everything"], "[cli]", "--mode must be"),
    ]
    for data, extra, component, text in cases:
        p = run_mlxgp("train", "--model", folder, "--data", data, "--seq-len", T, "--out", tmp_path / "o", *extra,
                      check=False)
        assert p.returncode != 0 and component in p.stderr and text in p.stderr, (data, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr


@pytest.mark.parametrize("extra, message", [
    (["--optimizer", "sgd", "--beta1", 0.8], "--beta1 applies only to --optimizer adamw"),
    (["--optimizer", "sgd", "--eps", 1e-6], "--eps applies only to --optimizer adamw"),
    (["--optimizer", "adamw", "--momentum", 0.9], "--momentum applies only to --optimizer sgd"),
    (["--mode", "full", "--lora-rank", 4], "--lora-rank applies only to --mode lora"),
    (["--mode", "full", "--lora-alpha", 4], "--lora-alpha applies only to --mode lora"),
    (["--mode", "lora", "--soft-prompt-tokens", 4], "--soft-prompt-tokens applies only to --mode soft-prompt"),
    (["--mode", "soft-prompt", "--lora-targets", "q_proj"], "--lora-targets applies only to --mode lora"),
    (["--eval-every", 5], "--eval-every applies only to runs with --valid"),
    (["--save-every", -1], "--save-every must be >= 0"),
    (["--inject-overflow-at", -2], "--inject-overflow-at must be >= 0"),
])
def test_options_that_do_not_apply_are_refused(extra, message, tiny, run_mlxgp, tmp_path):
    """An option the chosen mode, optimizer or data does not use is refused in one line, never ignored."""
    model, folder = tiny["llama"]
    _data(tmp_path / "d.jsonl", model.config.vocab_size)
    p = run_mlxgp("train", "--model", folder, "--data", tmp_path / "d.jsonl", "--seq-len", T, "--steps", 1,
                  "--out", tmp_path / "o", *extra, check=False)
    assert p.returncode == 2 and p.stderr.strip() == f"[cli] {message}", p.stderr
    p = run_mlxgp("train", "--model", folder, "--data", tmp_path / "d.jsonl", "--valid", tmp_path / "d.jsonl",
                  "--seq-len", T, "--steps", 1, "--eval-every", -1, "--out", tmp_path / "o", check=False)
    assert p.returncode == 2 and p.stderr.strip() == "[cli] --eval-every must be >= 0", p.stderr


def test_moe_expert_lora_targets_are_refused(tiny, run_mlxgp, tmp_path):
    """mixtral's experts are stacked [experts, out, in]: LoRA does not adapt them, so a target that reaches
    only them in a layer is refused rather than ignored. qwen2_moe's shared expert is a plain linear of the
    same name and is adapted (peft adapts it too), as are the dense layers' gate_proj."""
    mixtral, mixtral_dir = tiny["mixtral"]
    _data(tmp_path / "d.jsonl", mixtral.config.vocab_size)
    p = run_mlxgp("train", "--model", mixtral_dir, "--data", tmp_path / "d.jsonl", "--seq-len", T, "--steps", 1,
                  "--lora-targets", "q_proj,gate_proj", "--out", tmp_path / "o", check=False)
    assert p.returncode == 2 and p.stderr.strip().startswith("[lora] target 'gate_proj' names the stacked MoE "
                                                             "experts 'model.layers.0."), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    qwen, qwen_dir = tiny["qwen2_moe"]
    _data(tmp_path / "q.jsonl", qwen.config.vocab_size)
    run_mlxgp("train", "--model", qwen_dir, "--data", tmp_path / "q.jsonl", "--seq-len", T, "--steps", 1,
              "--lora-targets", "gate_proj", "--out", tmp_path / "q")
    names = load_file(str(tmp_path / "q" / "adapters.safetensors"))
    assert any(".shared_expert.gate_proj." in k for k in names) and not any("switch_mlp" in k for k in names)


def test_loss_refuses_targets_out_of_bounds_as_torch_does(run_mlxgp, tmp_path):
    logits = np.zeros((3, 5), dtype=np.float32)
    for bad in (5, -1):
        targets = np.array([0, bad, 1], dtype=np.int32)
        with pytest.raises((IndexError, RuntimeError)):
            F.cross_entropy(torch.tensor(logits), torch.tensor(targets, dtype=torch.long))
        save_file({"logits": logits, "targets": targets}, str(tmp_path / "in.safetensors"))
        p = run_mlxgp("loss", "--in", tmp_path / "in.safetensors", "--out", tmp_path / "out.safetensors", check=False)
        assert p.returncode != 0 and p.stderr.strip() == (f"[loss] target {bad} is out of bounds: targets must be in "
                                                          f"[0, 5) or ignore_index (-100)"), p.stderr


def test_grad_accumulation_equals_one_big_batch(tiny, run_mlxgp, tmp_path):
    model, folder = tiny["llama"]
    _data(tmp_path / "d.jsonl", model.config.vocab_size)
    # SGD: the update is linear in the gradient, so summation-order noise is not amplified as by Adam.
    base = ["--model", folder, "--data", tmp_path / "d.jsonl", "--mode", "full", "--seq-len", T, "--no-shuffle",
            "--steps", 3, "--lr", 0.1, "--optimizer", "sgd"]
    run_mlxgp("train", *base, "--batch-size", 2, "--out", tmp_path / "big")
    run_mlxgp("train", *base, "--batch-size", 1, "--grad-accum", 2, "--out", tmp_path / "accum")
    a = load_file(str(tmp_path / "big" / "model.safetensors"))
    b = load_file(str(tmp_path / "accum" / "model.safetensors"))
    diff = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    print(f"3 SGD steps, batch 2 vs 2 x 1 accumulated: max |param diff| = {diff:.2e}")
    assert diff <= 1e-6


def test_resume_refuses_another_models_checkpoint(tiny, run_mlxgp, tmp_path):
    llama, llama_dir = tiny["llama"]
    _, qwen_dir = tiny["qwen3"]
    _data(tmp_path / "d.jsonl", llama.config.vocab_size)
    _train(run_mlxgp, llama_dir, tmp_path / "d.jsonl", tmp_path / "run", "--steps", 1, "--lr", 1e-3)
    p = run_mlxgp("train", "--model", qwen_dir, "--data", tmp_path / "d.jsonl", "--mode", "full", "--seq-len", T,
                  "--steps", 2, "--out", tmp_path / "run2", "--resume", tmp_path / "run", check=False)
    assert p.returncode != 0 and "[train]" in p.stderr and "belongs to another model" in p.stderr, p.stderr
    # The same model under another path spelling resumes; other weights of the same shapes at the same path
    # do not, nor another LoRA alpha (same tensor shapes, other math).
    import os
    import shutil

    other = tmp_path / "other"
    shutil.copytree(llama_dir, other)
    _train(run_mlxgp, f"{other}/../{other.name}", tmp_path / "d.jsonl", tmp_path / "run", "--steps", 2, "--lr", 1e-3,
           "--resume", tmp_path / "run")
    tiny_models.make_tiny_model("llama", tmp_path / "reseeded", seed=1)
    shutil.copy(tmp_path / "reseeded" / "model.safetensors", other / "model.safetensors")
    p = run_mlxgp("train", "--model", other, "--data", tmp_path / "d.jsonl", "--mode", "full", "--seq-len", T,
                  "--steps", 3, "--out", tmp_path / "run", "--resume", tmp_path / "run", check=False)
    assert p.returncode != 0 and "belongs to another model (its weights or architecture differ" in p.stderr, p.stderr
    lora = ["train", "--model", llama_dir, "--data", tmp_path / "d.jsonl", "--mode", "lora", "--seq-len", T,
            "--lora-alpha", 16]
    run_mlxgp(*lora, "--steps", 1, "--out", tmp_path / "lora")
    p = run_mlxgp(*lora[:-1], 32, "--steps", 2, "--out", tmp_path / "lora", "--resume", tmp_path / "lora", check=False)
    assert p.returncode != 0 and "(its lora differs" in p.stderr, p.stderr
    assert os.path.isdir(tmp_path / "lora" / "checkpoint-1")
    # A half-written checkpoint (killed mid-save) is ignored: `latest` still names the complete one.
    (tmp_path / "run" / ".tmp-checkpoint-2-123").mkdir()
    (tmp_path / "run" / ".tmp-checkpoint-2-123" / "trainer_state.safetensors").write_bytes(b"partial")
    _train(run_mlxgp, llama_dir, tmp_path / "d.jsonl", tmp_path / "run", "--steps", 2, "--lr", 1e-3, "--resume",
           tmp_path / "run")
    assert (tmp_path / "run" / "latest").read_text().strip() == "checkpoint-2"


def test_interrupted_final_write_and_stale_temporaries(tiny, run_mlxgp, tmp_path):
    """Issue 20: a run killed while writing its final weights left `latest` at the last step with the
    previous step's model.safetensors, and re-running said "already at step N"; kills also left
    `.tmp-checkpoint-*` folders and `*.tmp.safetensors` files that no later run removed."""
    llama, llama_dir = tiny["llama"]
    _data(tmp_path / "d.jsonl", llama.config.vocab_size)
    run = tmp_path / "run"
    _train(run_mlxgp, llama_dir, tmp_path / "d.jsonl", run, "--steps", 2, "--lr", 1e-3)
    good = load_file(str(run / "model.safetensors"))
    # What such a kill leaves: final weights of an earlier step (here: garbage) under the real name,
    # plus temporaries of the interrupted saves.
    save_file({k: np.zeros_like(v) for k, v in good.items()}, str(run / "model.safetensors"))
    (run / ".tmp-checkpoint-2-123").mkdir()
    (run / ".tmp-checkpoint-2-123" / "trainer_state.safetensors").write_bytes(b"partial")
    (run / "model.safetensors.tmp.safetensors").write_bytes(b"partial")
    (run / "latest.tmp").write_text("checkpoint-")
    p = _train(run_mlxgp, llama_dir, tmp_path / "d.jsonl", run, "--steps", 2, "--lr", 1e-3, "--resume", run)
    assert "already at step 2" in p.stderr and "rewritten" in p.stderr, p.stderr
    assert "removed 3 temporary file(s)" in p.stderr, p.stderr
    again = load_file(str(run / "model.safetensors"))
    assert all(np.array_equal(good[k], again[k]) for k in good)
    leftovers = sorted(x.name for x in run.iterdir() if ".tmp" in x.name)
    assert leftovers == [], leftovers
    # Beyond the checkpoint's step is still refused in one line.
    p = run_mlxgp("train", "--model", llama_dir, "--data", tmp_path / "d.jsonl", "--mode", "full", "--batch-size", B,
                  "--seq-len", T, "--steps", 1, "--out", run, "--resume", run, check=False)
    assert p.returncode == 2 and "already at step 2, beyond --steps 1" in p.stderr, p.stderr


def _with_config(folder, dst, **fields):
    """A copy of a tiny model folder with config.json fields changed (the weights are shared by copy)."""
    import shutil
    shutil.copytree(folder, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(fields)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


AUX_COEF = 0.5  # large enough that the router gradients differ well beyond the tolerance without the term


# transformers adds router_aux_loss_coef * load_balancing_loss_func(router_logits, E, k, attention_mask) when
# the config has output_router_logits: the loss, the aux loss and every gradient (the routers' get the aux
# term's) against one torch step; padded: right-padded rows whose pad tokens the attention mask drops from
# the balancing statistics. qwen2_moe's dense layer 1 (mlp_only_layers) routes nothing and is skipped.
@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("arch", ["mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss", "olmoe", "granitemoe"])
def test_moe_router_aux_loss_matches_torch(arch, padded, tiny, run_mlxgp, tmp_path):
    model, base = tiny[arch]
    folder = _with_config(base, tmp_path / "model", output_router_logits=True, router_aux_loss_coef=AUX_COEF)
    rng = np.random.default_rng(3)
    lengths = [T, 9] if padded else [T, T]
    rows = [rng.integers(3, model.config.vocab_size, n).tolist() for n in lengths]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"input_ids": r}) + "\n" for r in rows))
    _train(run_mlxgp, folder, tmp_path / "d.jsonl", tmp_path / "out", "--steps", 1, "--lr", 1e-3, "--dump-grads",
           tmp_path / "g.safetensors", "--log-json", tmp_path / "log.jsonl")
    got = load_file(str(tmp_path / "g.safetensors"))
    log = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])

    ids = torch.zeros(B, T, dtype=torch.long)  # the pad id is irrelevant: pad positions are masked out
    mask = torch.zeros(B, T, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    m = _fresh(folder)
    out = m(ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    refs = {}
    for name, p in m.named_parameters():
        refs.update(_as_mlxgp_grads(arch, name, p.grad.numpy()))
    assert set(got) == set(refs)
    worst = max(float(np.abs(got[n] - r).max() / max(np.abs(r).max(), 1e-12)) for n, r in refs.items())

    # The same step without the aux term: the router gradients must move well beyond the tolerance, so
    # dropping (or mis-masking) the term cannot pass.
    plain = _fresh(base)
    plain(ids, attention_mask=mask, labels=labels).loss.backward()
    plain_refs = {}
    for name, p in plain.named_parameters():
        plain_refs.update(_as_mlxgp_grads(arch, name, p.grad.numpy()))
    routers = [n for n in refs if n.endswith((".gate.weight", ".router.weight", ".router.layer.weight"))
               and "shared_expert" not in n]
    effect = max(float(np.abs(refs[n] - plain_refs[n]).max() / np.abs(refs[n]).max()) for n in routers)

    ldiff, adiff = abs(log["loss"] - out.loss.item()), abs(log["aux_loss"] - out.aux_loss.item())
    print(f"{arch} {'padded' if padded else 'full'}: loss {out.loss.item():.6f} (aux {out.aux_loss.item():.6f} x "
          f"{AUX_COEF}) |loss diff| {ldiff:.2e} |aux diff| {adiff:.2e}; {len(got)} gradients, max relative "
          f"|diff| {worst:.2e}; the aux term moves the {len(routers)} routers' gradients by {effect:.2e}")
    assert ldiff <= 1e-5 and adiff <= 1e-5
    assert worst <= 1e-4
    assert effect >= 1e-2


def test_moe_router_jitter_refused_in_training(tiny, run_mlxgp, tmp_path):
    model, base = tiny["mixtral"]
    folder = _with_config(base, tmp_path / "model", router_jitter_noise=0.1)
    _data(tmp_path / "d.jsonl", model.config.vocab_size, n=2)
    p = run_mlxgp("train", "--model", folder, "--data", tmp_path / "d.jsonl", "--seq-len", T, "--out",
                  tmp_path / "o", "--steps", 1, check=False)
    assert p.returncode != 0 and "[train]" in p.stderr and "router_jitter_noise" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


@pytest.mark.parametrize("arch, field", [("llama", "attention_dropout"), ("mixtral", "attention_dropout"),
                                         ("gpt2", "resid_pdrop")])
def test_model_dropout_refused_in_training(arch, field, tiny, run_mlxgp, tmp_path):
    """transformers applies the config's dropout rates in training mode; mlxgp has no model dropout, so a
    nonzero rate is refused in one line instead of training another model than asked for."""
    model, base = tiny[arch]
    folder = _with_config(base, tmp_path / "model", **{field: 0.1})
    _data(tmp_path / "d.jsonl", model.config.vocab_size, n=2)
    p = run_mlxgp("train", "--model", folder, "--data", tmp_path / "d.jsonl", "--seq-len", T, "--out",
                  tmp_path / "o", "--steps", 1, "--mode", "full", check=False)
    assert p.returncode != 0 and "[train]" in p.stderr and f"{field} = 0.1" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    # Generation is eval mode: the same folder generates.
    run_mlxgp("generate", "--model", folder, "--input-ids", "1,2,3", "--max-new-tokens", 2)
