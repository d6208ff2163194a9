"""Speculative and prompt-lookup decoding, greedy, batch 1: decode speed against plain greedy decoding of
the same engine, and mlxgp against mlx-lm's speculative decoding (speculative_generate_step) on the same
target / draft pair, same run, same prompt ids, exactly max_new_tokens tokens (EOS ignored).

The only checkpoint available offline is SmolLM2-135M, so the drafts are built from it: its MLX 8-bit
copy (the best draft available: same predictions, cheaper to run), and the target's first DRAFT_LAYERS
layers, as mlxgp's self-speculation (--draft-layers) and as a truncated copy saved as an HF folder (what
mlx-lm needs, and mlxgp's --draft-model). Prompt lookup runs on a prompt whose answer
copies text from it (mlx-lm has no prompt lookup: its plain greedy run is shown for reference)."""
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from common import HF_F32_DIR, MLX_Q8_DIR, MODELS, ROOT
from prompt import prompt_ids
from runner import RunError, run_json

from . import Context, Table, section

WORKERS = ROOT / "bench" / "workers"
RUN_TIMEOUT_S = 600
DRAFT_LAYERS = 24  # of 30
NUM_DRAFT = 3
LOOKUP_TOKENS = 7  # 8 verified rows: the most the decode-shaped matmul kernels take (kLinearMaxRows)
LOOKUP_NGRAM = 3

COPY_TEXT = ("The history of the lighthouse is a story of engineering against the sea. Early towers burned "
             "wood or coal in open braziers, and their light was weak and easily hidden by rain. In 1822 "
             "Augustin Fresnel designed a lens built from concentric rings of glass prisms that gathered "
             "almost all of the lamp's light into a narrow, powerful beam.")
# SmolLM2's chat format, written out: the driver only has the tokenizer (no template engine).
LOOKUP_PROMPT = ("<|im_start|>user\nRepeat the following text exactly, word for word:\n\n" + COPY_TEXT
                 + "<|im_end|>\n<|im_start|>assistant\n")


@dataclass
class Variant:
    key: str
    engine: str  # "mlxgp" | "mlx-lm"
    method: str
    prompt: str  # "essay" | "copy"
    extra: list = field(default_factory=list)  # mlxgp flags
    runs: list = field(default_factory=list)
    error: str | None = None


def _variants() -> list[Variant]:
    spec = ["--use-speculative", "--num-draft-tokens", str(NUM_DRAFT)]
    return [
        Variant("mlxgp-plain", "mlxgp", "plain greedy", "essay"),
        Variant("mlxgp-q8draft", "mlxgp", "speculative, draft: the MLX 8-bit copy", "essay",
                spec + ["--draft-model", str(MLX_Q8_DIR)]),
        Variant("mlxgp-self", "mlxgp", f"speculative, --draft-layers {DRAFT_LAYERS}", "essay",
                spec + ["--draft-layers", str(DRAFT_LAYERS)]),
        Variant("mlx-lm-plain", "mlx-lm", "plain greedy", "essay"),
        Variant("mlx-lm-q8draft", "mlx-lm", "speculative, draft: the MLX 8-bit copy", "essay"),
        Variant("mlxgp-plain-copy", "mlxgp", "plain greedy", "copy"),
        Variant("mlxgp-lookup-copy", "mlxgp",
                f"prompt lookup ({LOOKUP_TOKENS} tokens, n-gram {LOOKUP_NGRAM})", "copy",
                ["--prompt-lookup-num-tokens", str(LOOKUP_TOKENS), "--max-matching-ngram-size", str(LOOKUP_NGRAM)]),
        Variant("mlx-lm-plain-copy", "mlx-lm", "plain greedy", "copy"),
    ]


def _argv(ctx: Context, v: Variant, ids: list[int], n: int) -> list[str]:
    joined = ",".join(map(str, ids))
    if v.engine == "mlxgp":
        return [str(ctx.mlxgp_bin), "generate", "--model", str(HF_F32_DIR), "--input-ids", joined,
                "--max-new-tokens", str(n), "--ignore-eos", "--json", *v.extra]
    if v.key == "mlx-lm-q8draft":
        return [str(ctx.python), str(WORKERS / "mlx_lm_speculative_worker.py"), str(HF_F32_DIR), str(MLX_Q8_DIR),
                joined, str(n), str(NUM_DRAFT)]
    return [str(ctx.python), str(WORKERS / "mlx_lm_worker.py"), str(HF_F32_DIR), joined, str(n)]


def _fmt(x, digits=1):
    return "n/a" if x is None else f"{x:,.{digits}f}"


def _median(v: Variant, key: str):
    vals = [r.stats.get(key) for r in v.runs if r.stats.get(key) is not None]
    return statistics.median(vals) if vals else None


@section("speculative", "Speculative and prompt-lookup decoding")
def run(ctx: Context) -> list[Table]:
    tok = HF_F32_DIR / "tokenizer.json"
    prompts = {"essay": prompt_ids(tok)}
    from tokenizers import Tokenizer

    prompts["copy"] = Tokenizer.from_file(str(tok)).encode(LOOKUP_PROMPT, add_special_tokens=False).ids
    n = ctx.max_new_tokens
    variants = _variants()
    for v in variants:
        if v.engine == "mlxgp":
            v.error = ctx.mlxgp_missing()
    ctx.log(f"[speculative] target {HF_F32_DIR.name}, draft {MLX_Q8_DIR.name}; prompts: essay "
            f"{len(prompts['essay'])} tokens, copy {len(prompts['copy'])} tokens; {n} new tokens")
    # Warm-up: page the weights in (not measured).
    for v in variants:
        if v.error:
            continue
        try:
            run_json(_argv(ctx, v, prompts[v.prompt][:16], 2), RUN_TIMEOUT_S)
        except RunError as e:
            v.error = f"warm-up failed: {e}"
    for rep in range(ctx.repeats):
        for v in variants:  # interleaved, so a drift of the machine hits every variant alike
            if v.error:
                continue
            try:
                r = run_json(_argv(ctx, v, prompts[v.prompt], n), RUN_TIMEOUT_S)
                if r.stats.get("generated_tokens") != n:
                    raise RunError(f"generated {r.stats.get('generated_tokens')} tokens, expected {n}")
            except RunError as e:
                v.error = str(e)
                continue
            v.runs.append(r)
            ctx.log(f"  {v.key:18} run {rep + 1}/{ctx.repeats}: decode {_fmt(r.stats.get('decode_tokens_per_s'))}"
                    f" tok/s, {r.wall_s:.1f} s")

    by_key = {v.key: v for v in variants}
    table = Table(
        title=f"Greedy decode tok/s with drafts vs plain greedy: SmolLM2-135M fp32 HF folder, {n} new tokens, "
              f"median of {ctx.repeats} runs",
        columns=["engine", "prompt", "method", "decode tok/s", "vs own plain", "acceptance",
                 "tokens / target forward", "mlxgp/mlx-lm", "tokens = plain"])
    for v in variants:
        if v.error or not v.runs:
            table.failures.append(f"{v.key}: {v.error}")
            table.rows.append([v.engine, v.prompt, v.method, f"failed: {v.error}"] + [""] * 5)
            continue
        decode = _median(v, "decode_tokens_per_s")
        plain = by_key[f"{v.engine}-plain" + ("-copy" if v.prompt == "copy" else "")]
        plain_decode = _median(plain, "decode_tokens_per_s") if plain.runs else None
        vs_plain = "" if v is plain or not plain_decode else f"{decode / plain_decode:.2f}x"
        spec = v.runs[0].stats.get("speculative") or {}
        if spec:
            acceptance = f"{spec['acceptance_rate']:.0%} ({spec['accepted_tokens']}/{spec['drafted_tokens']})"
            per_forward = f"{spec['tokens_per_target_forward']:.2f}"
        elif "from_draft" in v.runs[0].doc:
            acceptance = f"{v.runs[0].doc['from_draft']} tokens from the draft"
            per_forward = ""
        else:
            acceptance = per_forward = ""
        ratio = ""
        if v.engine == "mlxgp":
            peer = {"mlxgp-plain": "mlx-lm-plain", "mlxgp-q8draft": "mlx-lm-q8draft",
                    "mlxgp-plain-copy": "mlx-lm-plain-copy",
                    "mlxgp-lookup-copy": "mlx-lm-plain-copy"}.get(v.key)
            p = by_key.get(peer)
            if p and p.runs:
                ratio = f"{decode / _median(p, 'decode_tokens_per_s'):.2f}x vs {p.key}"
        same = "yes" if plain.runs and v.runs[0].token_ids == plain.runs[0].token_ids else (
            "" if v is plain else "NO")
        table.rows.append([v.engine, v.prompt, v.method, _fmt(decode), vs_plain, acceptance, per_forward, ratio,
                           "" if v is plain else same])
    table.notes = [
        f"target: {HF_F32_DIR.name} (fp32, 30 layers); drafts: {MLX_Q8_DIR.name} (the same model, MLX affine "
        f"8-bit, group 64; mlxgp --draft-model, mlx-lm draft_model), and for mlxgp alone its own first "
        f"{DRAFT_LAYERS} layers built in memory from the target's arrays (--draft-layers, self-speculation). "
        f"num_draft_tokens={NUM_DRAFT} for both engines.",
        "decode tok/s: generated tokens after the first / time after the first (mlxgp speculative counts the "
        "first round's tokens with the time to first token). 'vs own plain' divides by the same engine's plain "
        "greedy run on the same prompt: above 1.00x the drafts pay off. 'tokens = plain': identical token ids.",
        "acceptance: mlxgp's accepted / drafted candidates; mlx-lm reports only how many emitted tokens came "
        "from the draft. The 8-bit copy predicts like the target at a fraction of its weight reads; the first "
        "layers of a 135M model alone predict poorly and cost most of a target forward, so self-speculation "
        "is shown for completeness, not speed; prompt lookup needs no draft forward and pays off where the "
        "output copies the prompt.",
    ]
    return [table]
