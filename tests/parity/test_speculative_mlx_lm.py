"""speculative_exact_match against mlx-lm 0.32's speculative decoding (mlx_lm.generate.
speculative_generate_step), run live on the same weights: the default model as an fp32 HF folder and,
as the draft, a copy of it truncated to its first DRAFT_LAYERS layers. With the greedy sampler
mlx-lm's behaviour is deterministic, so the tokens must be identical, and so must the number of tokens
taken from the draft (mlx-lm yields from_draft per token; mlxgp reports accepted_tokens). The
self-speculative draft (--draft-layers, the target's own first layers) is the same model, so it must
give the same figures."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRAFT_LAYERS = 20
NUM_DRAFT = 3
MAX_NEW = 32
PROMPTS = [
    [1, 504, 2115, 3049, 28, 10307, 314],
    [1, 1350, 1646, 282, 4649, 314, 4649, 28, 10203, 28, 10203, 28],
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """(target folder, truncated draft folder)."""
    from safetensors.numpy import load_file, save_file

    target = ROOT / ".cache" / "models" / "smollm2-135m-hf-f32"
    if not (target / ".bench-recipe").is_file():
        subprocess.run([sys.executable, str(ROOT / "bench" / "prepare_models.py")], check=True, timeout=1200)
    draft = tmp_path_factory.mktemp("draft")
    cfg = json.loads((target / "config.json").read_text())
    cfg["num_hidden_layers"] = DRAFT_LAYERS
    (draft / "config.json").write_text(json.dumps(cfg))
    weights = load_file(target / "model.safetensors")

    def keep(name):
        parts = name.split(".")
        return not (name.startswith("model.layers.") and int(parts[2]) >= DRAFT_LAYERS)

    save_file({k: v for k, v in weights.items() if keep(k)}, draft / "model.safetensors", metadata={"format": "pt"})
    for f in ("tokenizer.json", "tokenizer_config.json"):
        if (target / f).exists():
            shutil.copy(target / f, draft / f)
    return target, draft


@pytest.fixture(scope="module")
def mlx_lm_runs(folders):
    """mlx-lm speculative greedy: per prompt (tokens, number taken from the draft)."""
    import mlx.core as mx
    from mlx_lm.generate import speculative_generate_step
    from mlx_lm.utils import load_model

    target, draft = folders
    model, _ = load_model(target)
    draft_model, _ = load_model(draft)
    out = []
    for ids in PROMPTS:
        tokens, from_draft = [], 0
        for tok, _, drafted in speculative_generate_step(mx.array(ids, dtype=mx.uint32), model, draft_model,
                                                         num_draft_tokens=NUM_DRAFT, max_tokens=MAX_NEW):
            tokens.append(int(tok))
            from_draft += bool(drafted)
        out.append((tokens, from_draft))
    return out


@pytest.mark.parametrize("draft_kind", ["draft-model", "draft-layers"])
def test_exact_match_greedy_equals_mlx_lm(folders, mlx_lm_runs, run_mlxgp_json, draft_kind):
    target, draft = folders
    draft_args = ["--draft-model", draft] if draft_kind == "draft-model" else ["--draft-layers", DRAFT_LAYERS]
    same_tokens = total = 0
    for ids, (ref_tokens, ref_from_draft) in zip(PROMPTS, mlx_lm_runs):
        got = run_mlxgp_json("generate", "--model", target, "--input-ids", ",".join(map(str, ids)),
                             "--max-new-tokens", MAX_NEW, "--ignore-eos", "--use-speculative",
                             "--speculative-exact-match", "--num-draft-tokens", NUM_DRAFT, *draft_args)
        ours = got["sequences"][0]["token_ids"]
        stats = got["stats"]["speculative"]
        total += len(ref_tokens)
        same_tokens += sum(a == b for a, b in zip(ours, ref_tokens))
        assert ours == ref_tokens
        # mlx-lm's first token comes from a verification forward too (it prefills all but the last prompt
        # token); mlxgp's from the prefill. Both count the draft tokens the target accepted.
        assert stats["accepted_tokens"] == ref_from_draft, (stats, ref_from_draft)
    print(f"{draft_kind}: {same_tokens}/{total} tokens identical to mlx-lm speculative greedy; "
          f"taken from the draft: {[r[1] for r in mlx_lm_runs]}")


# Repetitive (prompt lookup finds candidates); 18 tokens.
KV_IDS = [504, 2644, 2643, 335, 260, 1171, 30, 378, 2767, 2643, 335, 260, 1993, 30, 378, 2644, 2643, 335]
KV_NEW = 24
REFUSED = ("[generate] speculative and prompt-lookup decoding cannot give plain decoding's tokens on a quantized "
           "KV cache")


def kv_modes(draft, num):
    return {"draft-model": ["--use-speculative", "--draft-model", draft, "--num-draft-tokens", num],
            "draft-layers": ["--use-speculative", "--draft-layers", 12, "--num-draft-tokens", num],
            "prompt-lookup": ["--prompt-lookup-num-tokens", num]}


@pytest.mark.parametrize("bits", [4, 8])
def test_kv_bits_with_start_past_the_run_gives_mlx_lms_greedy(folders, run_mlxgp, tmp_path, bits):
    """quantized_kv_start at prompt + max_new_tokens - 1, the first start at which no forward of plain decoding
    reads a quantized cache: speculative decoding (draft model, self-draft) and prompt lookup give mlx-lm
    generate_step's tokens and log-probabilities. The caches were quantized right after each verification
    forward, whose rejected candidates passed the start early: the last rounds read a quantized cache and
    their log-probabilities moved by 1.5-3.5 (8 candidates a round)."""
    import mlx.core as mx
    import numpy as np
    from mlx_lm.generate import generate_step
    from mlx_lm.utils import load_model
    from safetensors.numpy import load_file

    target, draft = folders
    start = len(KV_IDS) + KV_NEW - 1
    model, _ = load_model(target)
    ref = [(int(t), np.array(lp)) for t, lp in generate_step(mx.array(KV_IDS, dtype=mx.uint32), model,
                                                             max_tokens=KV_NEW, kv_bits=bits, quantized_kv_start=start)]
    for name, mode in kv_modes(draft, 8).items():
        out = tmp_path / f"{name}.safetensors"
        run_mlxgp("generate", "--model", target, "--dtype", "float32", "--input-ids", ",".join(map(str, KV_IDS)),
                  "--max-new-tokens", KV_NEW, "--ignore-eos", "--kv-bits", bits, "--quantized-kv-start", start,
                  "--output-logits", "--scores-out", out, *mode)
        d = load_file(out)
        assert d["token_ids.0"].tolist() == [t for t, _ in ref], name
        logits = d["logits.0"].astype(np.float64)
        top = logits.max(1, keepdims=True)
        lp = logits - top - np.log(np.exp(logits - top).sum(1, keepdims=True))
        worst = max(float(np.abs(lp[i] - r).max()) for i, (_, r) in enumerate(ref))
        print(f"kv_bits {bits}, start {start}, {name}: tokens identical, log-probabilities within {worst:.1e}")
        assert worst < 2e-3, (name, worst)


def test_kv_bits_speculation_is_refused_where_a_forward_reads_a_quantized_cache(folders, run_mlxgp):
    """kv_bits with quantized_kv_start unset (quantized from the first position), 0, inside the prompt, or
    beyond it but inside the run: a verification forward (k + 1 positions) rounds differently from plain
    decoding's one-token forwards (~2e-5 in the logits on standard caches), and the quantized cache turns that
    rounding into whole 4/8-bit steps: the logits moved by up to ~0.1 and the tokens parted from plain
    decoding's and mlx-lm generate_step's (kv_bits 8, unset: at token 14, exit 0; kv_bits 4, start 20 with
    --draft-layers 12: at token 1). Refused in one line, as mlx-lm's own tokens cannot be promised."""
    target, draft = folders
    n = len(KV_IDS)
    for start, bits in ((None, 8), (0, 8), (5, 4), (n, 4), (n + KV_NEW - 2, 8)):
        for name, mode in kv_modes(draft, 3).items():
            proc = run_mlxgp("generate", "--model", target, "--input-ids", ",".join(map(str, KV_IDS)),
                             "--max-new-tokens", KV_NEW, "--kv-bits", bits,
                             *([] if start is None else ["--quantized-kv-start", start]), *mode, check=False)
            assert proc.returncode == 2, (start, name, proc.stdout[-300:])
            assert proc.stderr.strip().startswith(REFUSED), (start, name, proc.stderr)
            assert len(proc.stderr.strip().splitlines()) == 1
