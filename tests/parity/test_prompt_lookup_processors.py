"""Prompt-lookup and speculative greedy decoding with logits processors that read the ids or keep state:
verification applies them position by position over the candidates (transformers _assisted_decoding),
and a rejected candidate must leave no trace in a stateful processor. On a tiny random llama, transformers
generate(prompt_lookup_num_tokens=...) with the same processors is the reference; mlxgp plain greedy with
the same settings must agree too, including with presence/frequency penalties (counts kept in on_token),
which transformers lacks."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402

MAX_NEW = 40
# Repetitive prompts, so that lookups find candidates.
PROMPTS = [[1, 7, 8, 9, 10, 7, 8, 9, 10, 7, 8], [1, 30, 31, 32, 40, 30, 31, 32, 41, 30, 31, 32, 40, 30]]
HF_PROCS = {"repetition_penalty": 1.2, "no_repeat_ngram_size": 4, "min_new_tokens": 5}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_models.make_tiny_model("llama", tmp_path_factory.mktemp("lookup_llama"))


def _ours(run_mlxgp_json, folder, tmp_path, ids, cfg):
    path = tmp_path / "gen.json"
    path.write_text(json.dumps({**cfg, "max_new_tokens": MAX_NEW}))
    out = run_mlxgp_json("generate", "--model", folder, "--dtype", "float32", "--input-ids", ",".join(map(str, ids)),
                         "--config", path)
    return out["sequences"][0]["token_ids"], out["stats"].get("speculative")


def test_prompt_lookup_with_processors_matches_transformers(tiny, run_mlxgp_json, tmp_path):
    import torch

    model, folder = tiny
    accepted = 0
    for ids in PROMPTS:
        with torch.no_grad():
            ref = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 do_sample=False, max_new_tokens=MAX_NEW, prompt_lookup_num_tokens=4,
                                 **HF_PROCS)[0, len(ids):].tolist()
        ours, stats = _ours(run_mlxgp_json, folder, tmp_path, ids,
                            {**HF_PROCS, "prompt_lookup_num_tokens": 4})
        plain, _ = _ours(run_mlxgp_json, folder, tmp_path, ids, HF_PROCS)
        assert ours == plain
        assert ours == ref
        accepted += stats["accepted_tokens"]
    print(f"prompt lookup + processors: identical to transformers and to plain greedy; {accepted} accepted")


@pytest.mark.parametrize("mode", [{"prompt_lookup_num_tokens": 3},
                                  {"use_speculative": True, "draft_layers": 2, "num_draft_tokens": 3}],
                         ids=["lookup", "self-speculative"])
def test_stateful_penalties_are_rolled_back(tiny, run_mlxgp_json, tmp_path, mode):
    _, folder = tiny
    procs = {"presence_penalty": 0.7, "frequency_penalty": 0.4, "no_repeat_ngram_size": 3}
    for ids in PROMPTS:
        ours, stats = _ours(run_mlxgp_json, folder, tmp_path, ids, {**procs, **mode})
        plain, _ = _ours(run_mlxgp_json, folder, tmp_path, ids, procs)
        assert ours == plain
        assert stats["drafted_tokens"] > 0
