"""Speculative and prompt-lookup decoding, greedy: on the default model the output must be the plain
greedy output, token for token. Each prompt runs transformers greedy generate() (the reference),
mlxgp plain greedy, mlxgp self-speculative greedy (the target's first layers as the draft) and mlxgp
prompt-lookup greedy on the same GGUF checkpoint in fp32."""
from concurrent.futures import ThreadPoolExecutor

import pytest

MAX_NEW = 32
DRAFT_LAYERS = 24  # of 30: enough agreement with the target to accept some candidates
NEAR_TIE = 1e-4  # mlxgp vs transformers may differ only where the reference's top-2 logit gap is this small

PLAIN_PROMPTS = [
    "The quick brown fox",
    "def fibonacci(n):\n    ",
    "1, 2, 3, 5, 8, 13,",
    # Repetitive text: prompt lookup finds its candidates here.
    "Copy the list exactly: apple, banana, cherry, date, elderberry, fig, grape. "
    "Again: apple, banana, cherry, date,",
    "In 1905, Albert Einstein published four papers that changed physics. The first explained the "
    "photoelectric effect, the second Brownian motion, the third special relativity, and the fourth",
    "Le café est très bon. 日本語のテキストも少し。",
]
CHAT_PROMPTS = [
    "What is the capital of France?",
    "Repeat this sentence twice: The cat sat on the mat.",
]


def prompt_ids(tok):
    out = [tok(p).input_ids for p in PLAIN_PROMPTS]
    for p in CHAT_PROMPTS:
        ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True)
        out.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return out


def reference_greedy(model, ids):
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=MAX_NEW,
                             attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return out[0, len(ids):].tolist()


def reference_top2_gap(model, ids):
    import torch

    with torch.no_grad():
        top = model(torch.tensor([ids])).logits[0, -1].float().topk(2).values
    return float(top[0] - top[1])


@pytest.fixture(scope="module")
def runs(hf_default, default_gguf, run_mlxgp_json):
    """Per prompt: (ids, transformers, plain, speculative, prompt lookup) generations."""
    model, tok = hf_default
    prompts = prompt_ids(tok)
    assert len(prompts) == 8
    modes = {
        "plain": [],
        "speculative": ["--use-speculative", "--draft-layers", DRAFT_LAYERS, "--num-draft-tokens", 4],
        "lookup": ["--prompt-lookup-num-tokens", 6, "--max-matching-ngram-size", 3],
    }

    def ours(ids, extra):
        return run_mlxgp_json("generate", "--model", default_gguf, "--dtype", "float32", "--input-ids",
                              ",".join(map(str, ids)), "--max-new-tokens", MAX_NEW, *extra)

    # mlxgp runs in a background thread (a subprocess each) while transformers generates.
    with ThreadPoolExecutor(max_workers=1) as pool:
        futures = [{m: pool.submit(ours, ids, extra) for m, extra in modes.items()} for ids in prompts]
        refs = [reference_greedy(model, ids) for ids in prompts]
        got = [{m: f.result() for m, f in fs.items()} for fs in futures]
    return model, prompts, refs, got


@pytest.mark.parametrize("mode", ["speculative", "lookup"])
def test_greedy_output_identical_to_plain_greedy(runs, mode):
    _, prompts, _, got = runs
    identical = 0
    for ids, g in zip(prompts, got):
        plain, spec = g["plain"]["sequences"][0], g[mode]["sequences"][0]
        assert g[mode]["prompt_token_ids"] == ids
        assert spec["token_ids"] == plain["token_ids"], f"{mode} differs from plain greedy for prompt {ids[:8]}..."
        assert spec["finish_reason"] == plain["finish_reason"]
        assert spec["text"] == plain["text"]
        identical += 1
    stats = [g[mode]["stats"]["speculative"] for g in got]
    lengths = [len(g[mode]["sequences"][0]["token_ids"]) for g in got]
    drafted = sum(s["drafted_tokens"] for s in stats)
    accepted = sum(s["accepted_tokens"] for s in stats)
    forwards = sum(s["target_forwards"] for s in stats)
    emitted = sum(lengths)
    print(f"{mode}: {identical}/{len(prompts)} identical to plain greedy; drafted {drafted}, accepted {accepted} "
          f"({accepted / max(drafted, 1):.1%}), {emitted / max(forwards, 1):.2f} tokens per target forward")
    # The figures are consistent with each other (every token comes from a verification forward: the
    # accepted candidates plus at most one target token per forward).
    for s, n in zip(stats, lengths):
        assert 0 <= s["accepted_tokens"] <= s["drafted_tokens"]
        assert s["accepted_tokens"] < n <= s["accepted_tokens"] + s["target_forwards"]
        assert s["tokens_per_target_forward"] == pytest.approx(n / s["target_forwards"])
        assert s["acceptance_rate"] == pytest.approx(s["accepted_tokens"] / max(s["drafted_tokens"], 1))
    assert accepted > 0 and forwards < emitted


@pytest.mark.parametrize("mode", ["speculative", "lookup"])
def test_greedy_output_matches_transformers(runs, mode):
    model, prompts, refs, got = runs
    same = total = 0
    for ids, ref, g in zip(prompts, refs, got):
        ours = g[mode]["sequences"][0]["token_ids"]
        total += len(ref)
        if ours == ref:
            same += len(ref)
            continue
        i = next((k for k in range(min(len(ours), len(ref))) if ours[k] != ref[k]), min(len(ours), len(ref)))
        same += i
        assert i < len(ours) and i < len(ref), f"lengths differ: ours {len(ours)}, transformers {len(ref)}"
        gap = reference_top2_gap(model, ids + ref[:i])
        assert gap < NEAR_TIE, f"token {i} differs from transformers (top-2 gap {gap:.2e})"
    print(f"{mode}: {same}/{total} tokens identical to transformers greedy")
