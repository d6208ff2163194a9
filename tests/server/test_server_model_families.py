"""`mlxgp serve` on the newer model families, tiny random models with the default model's tokenizer: a
YaRN-scaled Qwen3 (rope_parameters {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings":
64}), gpt_oss (attention sinks, biased experts, alternating windows, its YaRN) and Ministral 3's multimodal
checkpoint (mistral3: its language model). Requests decoded together
in one batch each give exactly the tokens `mlxgp generate` gives alone, and those equal transformers' greedy
generate() on the same folder; LFM2 (gated short convolutions beside attention), Qwen3-Next (gated delta nets) and
Gemma 3 ((1 + w) norms, which a server once failed to run: made lazily at load, they were evaluated on the worker
thread, which has no stream of the loading thread's) too. And an MLX folder in mxfp4 mode against mlx-lm."""
import concurrent.futures as cf

import openai
import pytest

from test_server import GGUF, Server, cli_generate

PROMPTS = ["The capital of France is", "Write a haiku about rain.", "List three prime numbers:"]
NEW = 16


CONFIGS = {
    "qwen3-yarn": ("Qwen3Config", dict(head_dim=32, rope_parameters={
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64})),
    "gpt_oss": ("GptOssConfig", dict(head_dim=16, num_local_experts=4, num_experts_per_tok=2, sliding_window=8,
                                     layer_types=["sliding_attention", "full_attention"])),
    # LFM2: a short-convolution layer (its state in a recurrent cache) before an attention one.
    "lfm2": ("Lfm2Config", dict(block_multiple_of=16, layer_types=["conv", "full_attention"])),
    # Gemma 3: (1 + w) norms (q / k norms too), a window of 8 on the first layer; the norms' 1 + w made at load.
    "gemma3_text": ("Gemma3TextConfig", dict(head_dim=16, sliding_window=8,
                                             layer_types=["sliding_attention", "full_attention"])),
    # Qwen3-Next: a gated delta net (its convolution and delta-rule states in a recurrent cache) before gated attention,
    # experts beside a sigmoid-gated shared expert.
    "qwen3_next": ("Qwen3NextConfig", dict(head_dim=16, layer_types=["linear_attention", "full_attention"],
                                           linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16,
                                           linear_value_head_dim=16, num_experts=4, num_experts_per_tok=2,
                                           moe_intermediate_size=32, shared_expert_intermediate_size=32)),
    # Ministral 3's multimodal checkpoint (a tiny Pixtral tower beside it), its query scale changing every 8
    # positions.
    "mistral3": ("Ministral3Config", dict(head_dim=16, rope_parameters={
        "rope_type": "yarn", "rope_theta": 1000000.0, "factor": 4.0, "original_max_position_embeddings": 8,
        "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0, "llama_4_scaling_beta": 0.5})),
}


def _tiny_folder(cls, extra, out):
    """A tiny random model of transformers' config class `cls` with the default model's tokenizer, saved to out."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    cfg = getattr(transformers, cls)(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, tie_word_embeddings=True, **extra)
    torch.manual_seed(0)
    if cls == "Ministral3Config":  # as its checkpoints come: the language model of a Mistral3ForConditionalGeneration
        vision = dict(model_type="pixtral", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, image_size=28, patch_size=14, head_dim=16)
        cfg = transformers.Mistral3Config(text_config=cfg.to_dict(), vision_config=vision, image_token_index=0)
        model = transformers.Mistral3ForConditionalGeneration(cfg).to(torch.float32)
    else:
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.08) if p.ndim >= 2 else p.uniform_(0.5, 1.5)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return model.eval(), tok, out


def _served_together(folder, *server_args):
    """The completions of PROMPTS sent at once to `mlxgp serve` on folder (decoded in one batch)."""
    server = Server(*server_args, model=folder)
    try:
        client = openai.OpenAI(base_url=server.url("/v1"), api_key="none", max_retries=0, timeout=300)
        with cf.ThreadPoolExecutor(len(PROMPTS)) as pool:
            return list(pool.map(lambda p: client.completions.create(
                model=server.model, prompt=p, max_tokens=NEW, extra_body={"min_new_tokens": NEW}).choices[0].text, PROMPTS))
    finally:
        assert server.stop() == 0, "".join(server.log)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def family_folder(request, tmp_path_factory):
    cls, extra = CONFIGS[request.param]
    return _tiny_folder(cls, extra, tmp_path_factory.mktemp(request.param.replace("-", "_")))


def test_batched_requests_equal_generate_alone_and_transformers(family_folder):
    import torch

    ref, tok, folder = family_folder
    cli = [cli_generate("--prompt", p, "--max-new-tokens", NEW, "--min-new-tokens", NEW, "--dtype", "float32",
                        model=folder)["sequences"][0] for p in PROMPTS]
    with torch.no_grad():
        for p, c in zip(PROMPTS, cli):
            ids = tok(p, return_tensors="pt").input_ids
            want = ref.generate(ids, do_sample=False, max_new_tokens=NEW, min_new_tokens=NEW)[0, ids.shape[1]:]
            assert c["token_ids"] == want.tolist(), p
    assert _served_together(folder, "--dtype", "float32") == [c["text"] for c in cli]


def test_mxfp4_folder_batched_requests_equal_mlx_lm(tmp_path):
    """An MLX folder in mxfp4 mode (mlx_lm.convert --q-mode mxfp4 of a tiny Qwen3): concurrent completions
    decoded in one batch give `mlxgp generate`'s tokens alone, and those are mlx-lm's greedy tokens."""
    import importlib

    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.utils import load_model

    _, tok, hf = _tiny_folder("Qwen3Config", dict(head_dim=32), tmp_path / "hf")
    folder = tmp_path / "mxfp4"
    importlib.import_module("mlx_lm.convert").convert(str(hf), str(folder), quantize=True, q_mode="mxfp4")
    ref, _ = load_model(folder)
    cli = [cli_generate("--prompt", p, "--max-new-tokens", NEW, "--min-new-tokens", NEW, model=folder)["sequences"][0]
           for p in PROMPTS]
    for p, c in zip(PROMPTS, cli):
        ids = tok(p).input_ids
        assert c["token_ids"] == [int(t) for t, _ in generate_step(mx.array(ids), ref, max_tokens=NEW)], p
    assert _served_together(folder) == [c["text"] for c in cli]


def test_lfm2_refuses_speculative_requests_in_one_line(tmp_path):
    """LFM2's convolution state cannot roll rejected candidates back: a request asking for speculative or
    prompt-lookup decoding gets a 400 with an OpenAI error object naming it; a plain one decodes."""
    _, _, folder = _tiny_folder("Lfm2Config", CONFIGS["lfm2"][1], tmp_path / "lfm2")
    server = Server("--draft-model", folder, model=folder)
    try:
        client = openai.OpenAI(base_url=server.url("/v1"), api_key="none", max_retries=0, timeout=300)
        for extra in ({"use_speculative": True}, {"prompt_lookup_num_tokens": 2}):
            with pytest.raises(openai.BadRequestError) as e:
                client.completions.create(model=server.model, prompt="one two one two", max_tokens=4,
                                          extra_body=extra)
            err = e.value.body
            assert err["message"] == ("speculative and prompt-lookup decoding roll rejected candidates back, which "
                                      "lfm2's recurrent layers (short convolutions) cannot")
            assert err["param"] == next(iter(extra)) and err["type"] == "invalid_request_error"
        assert client.completions.create(model=server.model, prompt="one two", max_tokens=4).choices[0].finish_reason
    finally:
        assert server.stop() == 0, "".join(server.log)
