"""The Python package on the newer model families (tiny random models, tests/parity/tiny_models.py): a
YaRN-scaled Qwen3 (rope_parameters {"rope_type": "yarn", "factor": 4.0, ...}) and gpt_oss (attention sinks,
biased experts with the clamped SwiGLU, alternating windows). Greedy tokens of one prompt and of a
left-padded batch equal transformers' generate() on the same folder."""
import pytest


@pytest.mark.parametrize("arch", ["qwen3-yarn", "gpt_oss"])
def test_greedy_matches_transformers(arch, mgp, tmp_path):
    import torch
    from tiny_models import make_tiny_model

    ref, folder = make_tiny_model(arch, tmp_path / arch)
    model, tokenizer = mgp.load(folder)
    prompts = [[5, 77, 301, 9, 41, 250, 7, 88, 123, 64, 19, 402], [300, 12, 97]]
    cfg = mgp.GenerationConfig(max_new_tokens=24, min_new_tokens=24, do_sample=False)
    got = [r["tokens"] for r in mgp.generate(model, tokenizer, prompts, cfg)]
    assert got[0] == mgp.generate(model, tokenizer, prompts[0], cfg)["tokens"]
    with torch.no_grad():
        want = [ref.generate(torch.tensor([p]), do_sample=False, max_new_tokens=24, min_new_tokens=24,
                             pad_token_id=0)[0, len(p):].tolist() for p in prompts]
    assert got == want
