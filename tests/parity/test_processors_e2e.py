"""End-to-end processor parity: greedy `mlxgp generate --dtype float32` against transformers
`generate()` on the default model, for GenerationConfigs combining the implemented logits
processors. Token ids and finish reasons must be identical."""
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

PLAIN = ["The quick brown fox", "def fibonacci(n):\n    ", "1, 2, 3, 5, 8, 13,", "Once upon a time, there was"]
CHAT = "What is the capital of France?"


def _configs(tok):
    """(name, prompt ids, config) where config holds HF GenerationConfig fields (also fed to mlxgp)."""
    plain = [tok(p).input_ids for p in PLAIN]
    chat = tok.apply_chat_template([{"role": "user", "content": CHAT}], add_generation_prompt=True, tokenize=True)
    chat = list(chat["input_ids"] if hasattr(chat, "keys") else chat)
    n = 16
    cases = [
        ("repetition_penalty 1.3", plain[0], {"repetition_penalty": 1.3}),
        ("repetition_penalty 1.1 code", plain[1], {"repetition_penalty": 1.1}),
        ("repetition_penalty 0.8", plain[2], {"repetition_penalty": 0.8}),
        ("no_repeat_ngram_size 2", plain[3], {"no_repeat_ngram_size": 2}),
        ("no_repeat_ngram_size 3 code", plain[1], {"no_repeat_ngram_size": 3}),
        ("no_repeat_ngram_size 1", plain[2], {"no_repeat_ngram_size": 1}),
        ("min_new_tokens chat", chat, {"min_new_tokens": 16}),
        ("min_length chat", chat, {"min_length": len(chat) + 12}),
        ("suppress_tokens", plain[0], {"suppress_tokens": [351, 253, 28]}),
        ("begin_suppress_tokens", plain[3], {"begin_suppress_tokens": [253, 597, 2205]}),
        ("forced_bos_token_id 1-token prompt", plain[0][:1], {"forced_bos_token_id": 1}),
        ("forced_eos_token_id", plain[3], {"forced_eos_token_id": 2}),
        ("remove_invalid_values + renormalize", plain[2], {"remove_invalid_values": True, "renormalize_logits": True}),
        ("repetition + ngram", plain[3], {"repetition_penalty": 1.2, "no_repeat_ngram_size": 3}),
        ("chat all length processors", chat, {"min_new_tokens": 8, "min_length": 5, "repetition_penalty": 1.15,
                                              "suppress_tokens": [30], "begin_suppress_tokens": [504]}),
        ("chat eos stop with repetition", chat, {"repetition_penalty": 1.05}),
        ("sequence_bias", plain[0], {"sequence_bias": [[[351], -5.0], [[351, 253], -3.0], [[2365], 2.5]]}),
        ("sequence_bias single tokens only", plain[2], {"sequence_bias": [[[28], -4.0], [[1082], 3.0]]}),
        ("bad_words_ids multi-token", plain[0], {"bad_words_ids": [[253, 2365], [33391], [28, 284]]}),
        ("exponential_decay_length_penalty", plain[3], {"exponential_decay_length_penalty": [4, 1.6]}),
        ("biases + min_new_tokens chat", chat, {"sequence_bias": [[[30], 1.5]], "bad_words_ids": [[16024]],
                                               "min_new_tokens": 6, "exponential_decay_length_penalty": [8, 1.3]}),
        ("code combo", plain[1], {"no_repeat_ngram_size": 4, "repetition_penalty": 1.05, "forced_eos_token_id": [2],
                                  "renormalize_logits": True}),
    ]
    return [(name, ids, {"max_new_tokens": n, **cfg}) for name, ids, cfg in cases]


def _reference(model, ids, cfg, eos):
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), do_sample=False, attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             **cfg)
    gen = out[0, len(ids):].tolist()
    return gen, ("eos" if gen and gen[-1] in eos else "length")


def test_processors_e2e_greedy(hf_default, default_gguf, run_mlxgp_json, tmp_path):
    model, tok = hf_default
    eos = model.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    cases = _configs(tok)
    for i, (_, _, cfg) in enumerate(cases):
        (tmp_path / f"gen{i}.json").write_text(json.dumps(cfg))
    # mlxgp runs in a background thread while transformers generates (the two overlap).
    with ThreadPoolExecutor(max_workers=1) as pool:
        ours = [pool.submit(run_mlxgp_json, "generate", "--model", default_gguf, "--dtype", "float32", "--input-ids",
                            ",".join(map(str, ids)), "--config", tmp_path / f"gen{i}.json")
                for i, (_, ids, _) in enumerate(cases)]
        refs = [_reference(model, ids, cfg, eos) for _, ids, cfg in cases]
        ours = [f.result()["sequences"][0] for f in ours]
    failures = []
    for (name, _, _), (ref, ref_reason), got in zip(cases, refs, ours):
        if got["token_ids"] != ref or got["finish_reason"] != ref_reason:
            failures.append(f"{name}: ours {got['token_ids']} ({got['finish_reason']}) vs ref {ref} ({ref_reason})")
    print(f"\nprocessor e2e parity: {len(cases) - len(failures)}/{len(cases)} configs identical")
    assert not failures, "\n".join(failures)
