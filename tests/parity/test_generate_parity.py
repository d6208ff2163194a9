"""Generation parity: `mlxgp generate` against transformers `generate()` run live on the same GGUF
checkpoint and the same prompt token ids; plus sampling reproducibility and the --json schema."""
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

MAX_NEW = 64
NEAR_TIE = 1e-4  # a divergence is tolerated only where the reference's top-2 logit gap is below this

PLAIN_PROMPTS = [
    "Write a haiku about the sea.",
    "def fibonacci(n):\n    ",
    "The quick brown fox",
    "1, 2, 3, 5, 8, 13,",
    "Le café est très bon. 日本語のテキストも少し。",
    "In 1905, Albert Einstein published four papers that changed physics. The first explained the "
    "photoelectric effect, the second Brownian motion, the third special relativity, and the fourth",
]
CHAT_PROMPTS = [
    "What is the capital of France?",
    "Explain gravity in one sentence.",
]


def prompt_ids(tok):
    out = [tok(p).input_ids for p in PLAIN_PROMPTS]
    for p in CHAT_PROMPTS:
        ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True)
        out.append(list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids))
    return out


def reference_greedy(model, ids, max_new=MAX_NEW, ignore_eos=False):
    """transformers greedy generation: the generated ids (eos_token_id=None never stops at EOS)."""
    import torch

    extra = {"eos_token_id": None} if ignore_eos else {}
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=max_new,
                             attention_mask=torch.ones(1, len(ids), dtype=torch.long), **extra)
    return out[0, len(ids):].tolist()


def reference_top2_gap(model, ids):
    """The reference's top-2 logit gap for the token after `ids` (only computed at a divergence:
    asking generate() for every step's logits doubles its run time)."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].float()
    top = logits.topk(2).values
    return float(top[0] - top[1])


def test_greedy_parity_fp32(hf_default, default_gguf, run_mlxgp_json):
    model, tok = hf_default
    prompts = prompt_ids(tok)
    assert len(prompts) == 8
    identical, same_tokens, total_tokens, near_ties, failures = 0, 0, 0, [], []
    # mlxgp runs in a background thread (a subprocess each) while transformers generates: the two
    # overlap, which roughly halves this test's wall time on a small machine.
    with ThreadPoolExecutor(max_workers=1) as pool:
        ours_all = [pool.submit(run_mlxgp_json, "generate", "--model", default_gguf, "--dtype", "float32",
                                "--input-ids", ",".join(map(str, ids)), "--max-new-tokens", MAX_NEW, "--ignore-eos")
                    for ids in prompts]
        refs = [reference_greedy(model, ids, ignore_eos=True) for ids in prompts]
        outs = [f.result() for f in ours_all]
    for ids, ref, got in zip(prompts, refs, outs):
        ours = got["sequences"][0]["token_ids"]
        assert got["prompt_token_ids"] == ids
        assert len(ref) == MAX_NEW
        total_tokens += len(ref)
        if ours == ref:
            identical += 1
            same_tokens += len(ref)
            continue
        i = next((k for k in range(min(len(ours), len(ref))) if ours[k] != ref[k]), min(len(ours), len(ref)))
        same_tokens += i
        if i >= len(ref):
            failures.append(f"prompt {ids[:6]}...: ours ran past the reference's end at step {i}")
            continue
        gap = reference_top2_gap(model, ids + ref[:i])
        case = f"prompt {ids[:6]}...: diverges at step {i} (ref {ref[i]}, ours {ours[i] if i < len(ours) else 'end'}), " \
               f"reference top-2 gap {gap:.3g}"
        (near_ties if gap < NEAR_TIE else failures).append(case)
    print(f"\ngreedy parity: {identical}/8 prompts identical, {same_tokens}/{total_tokens} tokens identical "
          "(tokens after a divergence not counted)")
    for c in near_ties:
        print("near tie (allowed):", c)
    assert not failures, "\n".join(failures)


def test_greedy_stops_at_eos_like_reference(hf_default, default_gguf, run_mlxgp_json):
    """With the model's own EOS (<|im_end|>, id 2), both stop at the same step."""
    model, tok = hf_default
    ids = prompt_ids(tok)[-2]  # a chat prompt: the instruct model answers briefly and ends with EOS
    ref = reference_greedy(model, ids, max_new=48)
    got = run_mlxgp_json("generate", "--model", default_gguf, "--dtype", "float32", "--input-ids",
                         ",".join(map(str, ids)), "--max-new-tokens", 48)["sequences"][0]
    assert ref[-1] == tok.eos_token_id, "the reference did not stop at EOS: pick another prompt"
    assert got["token_ids"] == ref
    assert got["finish_reason"] == "eos"
    assert got["text"] == tok.decode(ref[:-1])  # the special EOS token is not part of the text


def test_sampling_is_reproducible(default_gguf, run_mlxgp_json):
    args = ["generate", "--model", default_gguf, "--prompt", "Once upon a time", "--max-new-tokens", 24,
            "--temperature", 0.9, "--top-p", 0.95, "--ignore-eos"]
    a = run_mlxgp_json(*args, "--seed", 1234)["sequences"][0]["token_ids"]
    b = run_mlxgp_json(*args, "--seed", 1234)["sequences"][0]["token_ids"]
    c = run_mlxgp_json(*args, "--seed", 4321)["sequences"][0]["token_ids"]
    assert a == b
    assert len(a) == 24
    assert a != c, "two seeds gave the same 24 sampled tokens"


def test_json_schema(default_gguf, run_mlxgp):
    proc = run_mlxgp("generate", "--model", default_gguf, "--prompt", "Hello", "--max-new-tokens", 5,
                     "--ignore-eos", "--json")
    out = json.loads(proc.stdout)  # exactly one JSON object on stdout
    assert list(out) == ["prompt_token_ids", "sequences", "stats"]
    assert all(isinstance(t, int) for t in out["prompt_token_ids"]) and out["prompt_token_ids"]
    assert len(out["sequences"]) == 1
    seq = out["sequences"][0]
    assert list(seq) == ["token_ids", "text", "finish_reason"]
    assert len(seq["token_ids"]) == 5 and all(isinstance(t, int) for t in seq["token_ids"])
    assert isinstance(seq["text"], str) and seq["text"]
    assert seq["finish_reason"] == "length"
    st = out["stats"]
    assert list(st) == ["prompt_tokens", "generated_tokens", "prefill_tokens_per_s", "decode_tokens_per_s",
                        "peak_memory_bytes"]
    assert st["prompt_tokens"] == len(out["prompt_token_ids"]) and st["generated_tokens"] == 5
    assert st["prefill_tokens_per_s"] > 0 and st["decode_tokens_per_s"] > 0 and st["peak_memory_bytes"] > 0


def test_text_matches_reference_decode(hf_default, default_gguf, run_mlxgp_json):
    """The streamed/JSON text is the reference tokenizer's decode of the generated ids (EOS excluded)."""
    _, tok = hf_default
    out = run_mlxgp_json("generate", "--model", default_gguf, "--prompt", "Les élèves écrivent", "--max-new-tokens",
                         12, "--ignore-eos")
    seq = out["sequences"][0]
    assert seq["text"] == tok.decode(seq["token_ids"])


def test_streaming_text_equals_json_text(default_gguf, run_mlxgp, run_mlxgp_json):
    args = ["generate", "--model", default_gguf, "--input-ids", "19161,253,421,30614,563,260,3426,30",
            "--max-new-tokens", 10, "--ignore-eos"]
    streamed = run_mlxgp(*args)
    text = run_mlxgp_json(*args)["sequences"][0]["text"]
    assert streamed.stdout == text + "\n"
    assert "[stats]" in streamed.stderr and "decode" in streamed.stderr


def test_chunked_prefill(hf_default, default_gguf, run_mlxgp_json):
    """A prompt prefilled in several chunks (--prefill-chunk-size 16; the default is 512) gives the
    reference's greedy tokens. Small chunks keep this cheap: MLX's CPU prefill is slow on 2 cores."""
    model, tok = hf_default
    text = " ".join(f"Item {i}: the {['red', 'green', 'blue'][i % 3]} box holds {i * 7 % 13} stones." for i in range(5))
    ids = tok(text + " In summary,").input_ids
    assert len(ids) > 3 * 16
    ref = reference_greedy(model, ids, max_new=12)
    got = run_mlxgp_json("generate", "--model", default_gguf, "--dtype", "float32", "--input-ids",
                         ",".join(map(str, ids)), "--max-new-tokens", len(ref), "--prefill-chunk-size", 16)
    ours = got["sequences"][0]["token_ids"]
    i = next((k for k in range(len(ref)) if k >= len(ours) or ours[k] != ref[k]), None)
    if i is not None:
        gap = reference_top2_gap(model, ids + ref[:i])
        print(f"chunked prefill: diverges at step {i}, reference top-2 gap {gap:.3g}")
        assert gap < NEAR_TIE
