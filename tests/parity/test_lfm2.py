"""LFM2 (lfm2) beyond test_architectures.py's shared checks: the short convolutions' recurrent state in every mode
that keeps or moves caches, against transformers 5.24's Lfm2ForCausalLM on the same fp32 weights.

- Rows that join and leave a running batch (5 prompts, 2 rows at a time, each with its own budget), on standard
  and on rotating attention caches (a window no row fills): each row's tokens are transformers' greedy generate().
- A saved prompt cache (attention keys / values and the convolution states) continued by a longer prompt.
- What a recurrent state cannot do is refused in one line: speculative and prompt-lookup decoding (they roll
  rejected candidates back), and a prompt cache that holds the whole prompt (its last position cannot be recomputed).
- The other spellings of the config (full_attn_idxs, block_ff_dim, tie_embedding, norm_eps) and conv_bias (biases on
  in_proj, out_proj and the convolution): logits against transformers.
- A Q8_0 GGUF with --int8-activations: llama.cpp's logits (node-llama-cpp 3.21.1's libllama; the F32 file is in
  test_gguf_architectures.py)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import recurrent_checks  # noqa: E402
import tiny_models  # noqa: E402
from cpu_features import needs_vnni  # noqa: E402

PREFILL, TOTAL = 16, 40


@pytest.fixture(scope="module")
def lfm2(tmp_path_factory):
    return tiny_models.make_tiny_model("lfm2", tmp_path_factory.mktemp("lfm2"))


def _ids(n, seed):
    return recurrent_checks.ids(n, seed)


@pytest.mark.parametrize("cache", [[], ["--max-kv-size", 64]], ids=["standard", "rotating"])
def test_rows_join_and_leave_a_running_batch(cache, lfm2, run_mlxgp, tmp_path):
    model, folder = lfm2
    recurrent_checks.check_rows_join_and_leave("lfm2", model, folder, run_mlxgp, tmp_path, cache)


def test_prompt_cache_holds_the_convolution_states(lfm2, run_mlxgp, run_mlxgp_json, tmp_path):
    model, folder = lfm2
    shapes = recurrent_checks.check_prompt_cache(model, folder, run_mlxgp, run_mlxgp_json, tmp_path)
    assert "layers.0.state.0" in shapes and "layers.1.keys" in shapes and "layers.0.keys" not in shapes


@pytest.mark.parametrize("flags", recurrent_checks.ROLLBACK_FLAGS, ids=["speculative", "prompt-lookup"])
def test_rolling_back_is_refused(flags, lfm2, run_mlxgp):
    recurrent_checks.check_rolling_back_refused(lfm2[1], run_mlxgp, flags, "lfm2", "short convolutions")


def test_released_config_spelling_and_conv_bias(run_mlxgp, tmp_path):
    """LFM2-1.2B's config.json spells the layers as full_attn_idxs and the MLP width as block_ff_dim, with
    tie_embedding and norm_eps; conv_bias puts biases on in_proj, out_proj and the convolution."""
    model, folder = tiny_models.make_tiny_model("lfm2", tmp_path / "m", conv_bias=True)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("layer_types")
    cfg["full_attn_idxs"] = [1]
    cfg["block_ff_dim"] = cfg.pop("intermediate_size")
    cfg["tie_embedding"] = cfg.pop("tie_word_embeddings")
    (folder / "config.json").write_text(json.dumps(cfg))
    import torch
    import transformers

    ref_model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert ref_model.config.layer_types == ["conv", "full_attention", "conv", "conv"]
    assert ref_model.model.layers[0].conv.conv.bias is not None
    ids = _ids(TOTAL, seed=8)
    ref = tiny_models.hf_stepwise_logits(ref_model, ids, PREFILL)
    out = tmp_path / "l.safetensors"
    run_mlxgp("logits", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--out", out, "--dtype", "float32",
              "--prefill", PREFILL)
    from safetensors.numpy import load_file

    got = load_file(str(out))["logits"]
    diff = float(np.abs(got - ref).max())
    print(f"lfm2 with conv_bias, the released config's spelling: max |diff| = {diff:.3e} over {TOTAL} positions")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-4


@needs_vnni
def test_q8_0_gguf_with_int8_activations_as_llama_cpp(lfm2, run_mlxgp, tmp_path):
    from safetensors.numpy import load_file
    from tests.refs import gguf_quant, llama_cpp

    model, _ = lfm2
    path = tiny_models.write_tiny_gguf(model, tmp_path / "q8.gguf", "Q8_0", gguf_quant.quantize_rows, vocab=True)
    assert gguf_quant.tensor_types(path)["blk.0.shortconv.in_proj.weight"] == "Q8_0"
    ids = _ids(40, seed=12)
    ref = llama_cpp.logits(path, ids, PREFILL, repack=False)
    run_mlxgp("logits", "--model", path, "--input-ids", ",".join(map(str, ids)), "--out", tmp_path / "l.safetensors",
              "--prefill", PREFILL, "--int8-activations")
    got = load_file(str(tmp_path / "l.safetensors"))["logits"][PREFILL - 1:len(ids) - 1]
    diff = float(np.abs(got - ref).max())
    print(f"lfm2 Q8_0 GGUF, int8 activations, vs llama.cpp: max |diff| {diff:.3e} (logits up to {np.abs(ref).max():.2f})")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-4


def test_chat_turns_reuse_the_state_that_holds_the_shared_prefix(hf_default, run_mlxgp, tmp_path, monkeypatch):
    """`mlxgp chat` on LFM2 (the default model's tokenizer and chat template): each turn's reply is transformers'
    greedy reply on the whole conversation so far, and a turn whose prompt extends exactly what the caches hold
    reuses them (the convolution state included) instead of prefilling the conversation again."""
    import test_chat_session
    from test_chat_session import STATS, common_prefix, reference_conversation

    monkeypatch.setattr(test_chat_session, "MAX_NEW", 8)  # (reference_conversation's budget)
    _, tok = hf_default
    model, folder = tiny_models.make_tiny_model("lfm2", tmp_path / "m", vocab_size=len(tok),
                                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    tok.save_pretrained(folder)
    turns = ["What is the capital of France?", "And what is it famous for?"]
    proc = run_mlxgp("chat", "--model", folder, "--dtype", "float32", "--max-new-tokens", 8,
                     input="\n".join(turns) + "\n")
    ref = reference_conversation(model, tok, turns, None)
    assert proc.stdout == "".join(text + "\n" for _, _, text, _ in ref)
    stats = [STATS.match(line) for line in proc.stderr.splitlines() if line.startswith("[chat] turn")]
    (ids0, reply0, _, eos0), (ids1, _, _, _) = ref
    cached = ids0 + (reply0 if eos0 and len(reply0) < 8 else reply0[:-1])
    reused = int(stats[1][3])
    print(f"lfm2 chat: turn 2 reused {reused} of {len(ids1)} prompt tokens (the caches held {len(cached)})")
    assert reused == (len(cached) if common_prefix(cached, ids1) == len(cached) else 0)
    assert reused > 0


def test_lfm2moe_gguf_with_a_routed_scale_is_refused(run_mlxgp, tmp_path):
    """llama.cpp's lfm2moe applies no routed scaling whatever expert_weights_scale says: a file asking for 1.5 is refused
    in one line rather than run otherwise than llama.cpp runs it (1.0 is test_gguf_architectures.py's)."""
    model, _ = tiny_models.make_tiny_model("lfm2_moe", tmp_path / "hf")
    path = tiny_models.write_tiny_gguf(model, tmp_path / "f32.gguf", "F32", vocab=True,
                                       meta={"lfm2moe.expert_weights_scale": 1.5})
    p = run_mlxgp("generate", "--model", path, "--input-ids", "5,9", "--max-new-tokens", 2, check=False)
    assert p.returncode != 0
    assert p.stderr.strip().splitlines()[-1] == (
        "[gguf] metadata 'lfm2moe.expert_weights_scale' is not supported (llama.cpp's lfm2moe ignores it)")
