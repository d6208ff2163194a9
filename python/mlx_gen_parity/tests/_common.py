"""Shared pieces of the parity / speed commands: running each engine on the same prompt ids and settings,
comparing token streams and logits, and printing plain tables."""
import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Modes compared token by token with transformers: name -> GenerationConfig fields (HF names).
MODES = {
    "greedy": {},
    "greedy+repetition_penalty=1.3": {"repetition_penalty": 1.3},
    "greedy+no_repeat_ngram_size=3": {"no_repeat_ngram_size": 3},
    "beam num_beams=3": {"num_beams": 3},
}


def find_mlxgp_bin(explicit=None):
    """The mlxgp executable: --mlxgp-bin, $MLXGP_BIN, PATH, or the repository's build/mlxgp."""
    for c in (explicit, os.environ.get("MLXGP_BIN"), shutil.which("mlxgp"),
              Path(__file__).resolve().parents[3] / "build" / "mlxgp"):
        if c and Path(c).is_file():
            return str(c)
    return None


def load_hf(path):
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return model


def hf_generate(model, ids, max_tokens, settings, eos):
    """(tokens, per-step raw logits [n, V] numpy, seconds, finish_reason)."""
    import torch

    kw = dict(max_new_tokens=max_tokens, do_sample=False, output_logits=True, return_dict_in_generate=True,
              pad_token_id=eos[0] if eos else 0)
    if eos:
        kw["eos_token_id"] = eos
    kw.update(settings)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), **kw)
    dt = time.perf_counter() - t0
    toks = out.sequences[0, len(ids):].tolist()
    if "num_beams" in settings:  # beams: logits are per beam, not per returned token
        logits = None
    else:
        logits = torch.stack([x[0] for x in out.logits]).float().numpy()
    return toks, logits, dt, finish_of(toks, max_tokens, eos)


def finish_of(tokens, max_tokens, eos):
    if tokens and eos and tokens[-1] in eos and len(tokens) <= max_tokens:
        return "eos"
    return "length"


def mgp_generate(mgp, model, tokenizer, ids, max_tokens, settings):
    want_logits = "num_beams" not in settings
    out = mgp.generate(model, tokenizer, ids, max_tokens=max_tokens, do_sample=False, output_logits=want_logits,
                       **settings)
    seq = out["sequences"][0]
    logits = None
    if want_logits and "logits" in seq:
        import numpy as np

        logits = np.array(seq["step_logits"])
    return seq["token_ids"], logits, out["stats"], seq["finish_reason"]


def mlxlm_generate(path, ids, max_tokens):
    """Greedy mlx-lm: (tokens, decode tokens/s)."""
    from mlx_lm import load, stream_generate

    model, tok = load(str(path))
    toks, tps = [], 0.0
    for r in stream_generate(model, tok, ids, max_tokens=max_tokens):
        toks.append(int(r.token))
        tps = r.generation_tps
        if r.finish_reason:
            break
    return toks, tps


def cli_generate(binary, path, ids, max_tokens, settings):
    args = [binary, "generate", "--model", str(path), "--input-ids", ",".join(map(str, ids)),
            "--max-new-tokens", str(max_tokens), "--json"]
    for k, v in settings.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip())
    r = json.loads(proc.stdout)
    return r["sequences"][0]["token_ids"], r["stats"]


def compare(a, b, la=None, lb=None):
    """(identical tokens on the common prefix, total, max |logit diff| over that prefix or None)."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    diff = None
    if la is not None and lb is not None:
        import numpy as np

        k = min(n + 1, len(la), len(lb))  # the first diverging step's logits still count
        if k:
            diff = float(np.max(np.abs(la[:k] - lb[:k])))
    return n, max(len(a), len(b)), diff


def table(headers, rows):
    rows = [[("" if c is None else (f"{c:.4g}" if isinstance(c, float) else str(c))) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def eos_ids(model):
    e = model.args.eos_token_id
    return list(e) if e else []


def parity_rows(mgp, model, tokenizer, hf_model, ids, max_tokens, modes=MODES):
    """One row per mode: mode, tokens identical / total, max logit diff, finish reasons equal."""
    rows = []
    for name, settings in modes.items():
        a, la, _, fa = mgp_generate(mgp, model, tokenizer, ids, max_tokens, settings)
        b, lb, _, fb = hf_generate(hf_model, ids, max_tokens, settings, eos_ids(model))
        n, total, diff = compare(a, b, la, lb)
        rows.append([name, f"{n}/{total}", diff, "yes" if fa == fb else f"no ({fa} vs {fb})"])
    return rows


def add_common_args(p):
    p.add_argument("--hf-model", required=True, help="local HF folder (the transformers reference)")
    p.add_argument("--mlx-model", required=True, help="local MLX / HF folder or .gguf that mlxgp and mlx-lm load")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--mlxgp-bin", default=None, help="the mlxgp executable (default: $MLXGP_BIN, PATH, build/mlxgp)")


def setup_one_prompt(doc, argv):
    """The start parity_hf and perf_bench share: the common arguments plus --prompt, mlxgp's model
    (with its tokenizer), the prompt's ids and transformers' reference model.
    Returns (args, mlx_gen_parity module, model, tokenizer, ids, hf)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--prompt", required=True)
    a = p.parse_args(argv)

    import mlx_gen_parity as mgp

    model, tokenizer = mgp.load(a.mlx_model)
    if tokenizer is None:
        p.error("--mlx-model has no tokenizer files")
    return a, mgp, model, tokenizer, tokenizer.encode(a.prompt), load_hf(a.hf_model)
