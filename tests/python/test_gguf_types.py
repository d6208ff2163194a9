"""The Python package on llama.cpp's IQ4_XS mixture of the default model (IQ4_XS and IQ4_NL blocks kept as
stored; made by llama.cpp's own quantizer, tests/refs/gguf_quant.py): greedy tokens equal transformers'
generate() on the same file (gguf-py's dequantization, fp32)."""
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT))
from tests.refs import gguf_quant  # noqa: E402


def test_iq4_file_greedy_matches_transformers(mgp, default_gguf):
    import torch
    import transformers

    path = gguf_quant.cached_quantized(default_gguf, "IQ4_XS")
    assert {"IQ4_XS", "IQ4_NL"} <= set(gguf_quant.tensor_types(path).values())
    model, tokenizer = mgp.load(str(path))
    prompt = "The history of the printing press"
    out = mgp.generate(model, tokenizer, prompt, mgp.GenerationConfig(max_new_tokens=24, do_sample=False,
                                                                     min_new_tokens=24))
    tok = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    ref = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                            dtype=torch.float32).eval()
    ids = tok(prompt, return_tensors="pt").input_ids
    assert out["prompt_token_ids"] == ids[0].tolist()
    with torch.no_grad():
        want = ref.generate(ids, do_sample=False, max_new_tokens=24, min_new_tokens=24)[0, ids.shape[1]:].tolist()
    assert out["tokens"] == want
