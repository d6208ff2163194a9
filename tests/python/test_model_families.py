"""The Python package on the newer model families (tiny random models, tests/parity/tiny_models.py): a
YaRN-scaled Qwen3 (rope_parameters {"rope_type": "yarn", "factor": 4.0, ...}) and gpt_oss (attention sinks,
biased experts with the clamped SwiGLU, alternating windows), phimoe (sparsemixer, LongRoPE's multipliers),
ernie4_5_moe (a correction bias in the choice, shared experts, the tied head's bias), hunyuan_v1_moe (a float32
router, the shared MLP), lfm2 (gated short convolutions keeping a recurrent state beside attention) and lfm2_moe
(those blocks with sigmoid-routed experts), qwen3_next / qwen3_5 / qwen3_5_moe_text (gated delta nets beside gated
attention; Qwen3.5's multimodal checkpoint read as its language model). Greedy tokens of one prompt and of a
left-padded batch equal transformers' generate() on the same folder. And a Gemma 4 GGUF with llama.cpp's gemma4
vocabulary, tokenized as llama.cpp tokenizes."""
import pytest


@pytest.mark.parametrize("arch", ["qwen3-yarn", "gpt_oss", "phimoe", "ernie4_5_moe", "hunyuan_v1_moe", "lfm2",
                                  "lfm2_moe", "qwen3_next", "qwen3_5", "qwen3_5_moe_text"])
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


def test_gguf_gemma4_with_its_vocabulary(mgp, tmp_path):
    """A Gemma 4 GGUF (E2B's layout) with llama.cpp's gemma4 vocabulary, through the package: the prompt's ids are
    llama.cpp's tokenization of it (node-llama-cpp's libllama, vocabulary only), the greedy tokens transformers'
    generate() on the model the file was written from, the text the tokenizer's decoding of them."""
    import ctypes

    import torch
    from test_llama_samplers import Llama
    from tiny_models import gemma4_vocabulary, make_tiny_model, write_tiny_gguf

    n = len(gemma4_vocabulary()[0])
    ref, _ = make_tiny_model("gemma4_text-e2b", tmp_path / "hf", vocab_size=n, vocab_size_per_layer_input=n,
                             bos_token_id=2, eos_token_id=1, pad_token_id=0)
    path = write_tiny_gguf(ref, tmp_path / "g.gguf", "F32", vocab="gemma4")
    model, tokenizer = mgp.load(str(path))
    prompt = "hello world\n\nthe world in"
    llama = Llama(path)
    out, b = (ctypes.c_int32 * 256)(), prompt.encode()
    ids = list(out[:llama.lib.llama_tokenize(llama.vocab, b, len(b), out, 256, True, False)])
    cfg = mgp.GenerationConfig(max_new_tokens=12, min_new_tokens=12, do_sample=False)
    got = mgp.generate(model, tokenizer, prompt, cfg)
    assert got["prompt_token_ids"] == ids and ids[0] == 2
    with torch.no_grad():
        want = ref.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=12, min_new_tokens=12,
                            pad_token_id=0)[0, len(ids):].tolist()
    assert got["tokens"] == want
    assert got["text"] == tokenizer.decode(want)
