"""What every model with recurrent layers (lfm2's short convolutions, qwen3_next's gated delta nets) must do with
its recurrent caches, against transformers' greedy generate() on the same folder: test_lfm2.py and
test_qwen3_next.py run these on their tiny models."""
import json

import numpy as np


def ids(n, seed):
    return np.random.default_rng(seed).integers(3, 512, size=n).tolist()


def hf_greedy(model, prompt, n):
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                             pad_token_id=0)
    return out[0, len(prompt):].tolist()


def check_rows_join_and_leave(name, model, folder, run_mlxgp, tmp_path, cache_flags):
    """5 prompts through 2 rows of a running batch, each with its own budget (rows finish at different steps and the
    waiting prompts take their places): each row's tokens are transformers' greedy generate()."""
    prompts = [ids(n, seed=n) for n in (12, 5, 9, 20, 3)]
    budgets = [4, 10, 6, 8, 12]
    refs = [hf_greedy(model, p, n) for p, n in zip(prompts, budgets)]
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text("".join(json.dumps({"input_ids": p, "config": {"max_new_tokens": n, "min_new_tokens": n}}) + "\n"
                             for p, n in zip(prompts, budgets)))
    proc = run_mlxgp("generate", "--model", folder, "--dtype", "float32", "--prompts-file", jsonl, "--batch-size", 2,
                     "--json", *cache_flags)
    rows = [json.loads(line)["sequences"][0]["token_ids"] for line in proc.stdout.splitlines() if line.strip()]
    same = sum(a == b for r, f in zip(rows, refs) for a, b in zip(r, f))
    print(f"{name} ({'rotating' if cache_flags else 'standard'} caches), 5 prompts through 2 rows: "
          f"{same}/{sum(budgets)} tokens identical to transformers")
    assert rows == refs


def check_prompt_cache(model, folder, run_mlxgp, run_mlxgp_json, tmp_path):
    """A prompt cache of 9 tokens continued by a 14-token prompt gives transformers' tokens; the same 9 tokens as the
    whole prompt are refused in one line (the recurrent layers cannot recompute the last position). Returns the
    saved tensors' shapes."""
    prompt = ids(14, seed=3)
    pc = tmp_path / "p.safetensors"
    run_mlxgp("cache-prompt", "--model", folder, "--input-ids", ",".join(map(str, prompt[:9])), "--out", pc,
              "--dtype", "float32")
    from safetensors import safe_open

    with safe_open(str(pc), "np") as f:
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
    common = ["--model", folder, "--dtype", "float32", "--max-new-tokens", 10, "--min-new-tokens", 10]
    got = run_mlxgp_json("generate", *common, "--input-ids", ",".join(map(str, prompt)), "--prompt-cache", pc)
    assert got["sequences"][0]["token_ids"] == hf_greedy(model, prompt, 10)
    whole = run_mlxgp("generate", *common, "--input-ids", ",".join(map(str, prompt[:9])), "--prompt-cache", pc,
                      check=False)
    assert whole.returncode != 0
    assert whole.stderr.strip().splitlines()[-1] == (
        f"[generate] the caches hold the whole prompt, and {model.config.model_type}'s recurrent layers cannot step "
        "back to recompute its last position: the prompt must go past the cached tokens")
    return shapes


def check_rolling_back_refused(folder, run_mlxgp, flags, model_type, kind):
    """Speculative and prompt-lookup decoding roll rejected candidates back, which no recurrent state can: one line."""
    p = run_mlxgp("generate", "--model", folder, "--input-ids", "5,9,5,9,5,9", "--max-new-tokens", 4, *flags,
                  check=False)
    assert p.returncode != 0
    assert p.stderr.strip().splitlines()[-1] == (
        f"[generate] speculative and prompt-lookup decoding roll rejected candidates back, which {model_type}'s "
        f"recurrent layers ({kind}) cannot")


ROLLBACK_FLAGS = [["--use-speculative", "--draft-layers", 2], ["--prompt-lookup-num-tokens", 3]]
