#!/usr/bin/env python3
"""Persona-steering demonstration (`make steering-demo`): extract a "happy minus sad" vector from two
contrasting prompt sets with `mlxgp steer extract`, then sample the default model on neutral prompts
with and without the vector at several alphas and count sentiment words in the replies. Writes
docs/steering.md. The measure is a fixed word list (below), not a classifier: it shows whether the
vector shifts the vocabulary of the replies, nothing more."""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "steering"

POSITIVE = ("happ", "joy", "wonderful", "love", "lovely", "great", "amazing", "beautiful", "delight", "excit",
            "fantastic", "fun", "perfect", "cheer", "glad", "grateful", "thank", "enjoy", "excellent", "best",
            "smil", "laugh", "sunny", "awesome", "pleas", "proud", "bright", "hope", "celebrat", "brilliant")
NEGATIVE = ("sad", "terribl", "awful", "hate", "horribl", "bad", "worst", "miserabl", "angry", "upset", "boring",
            "depress", "disappoint", "gloom", "dread", "pain", "cry", "cried", "stress", "annoy", "lonel",
            "fear", "worr", "broken", "disaster", "rude", "nasty", "ugly", "dark", "despair")


def count(words, stems):
    return sum(1 for w in words if any(w.startswith(s) for s in stems))


def score(text):
    words = re.findall(r"[a-z']+", text.lower())
    return count(words, POSITIVE), count(words, NEGATIVE)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", default=os.environ.get("MLXGP_BIN", str(ROOT / "build" / "mlxgp")))
    ap.add_argument("--model", default="default")
    ap.add_argument("--layer", type=int, default=12)
    ap.add_argument("--alphas", default="-4,0,2,4,6")
    ap.add_argument("--samples", type=int, default=5, help="samples per prompt (10 prompts)")
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--out", default=str(ROOT / "docs" / "steering.md"))
    args = ap.parse_args()

    vec = ROOT / ".cache" / "steering" / f"happy_sad_layer{args.layer}.safetensors"
    vec.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([args.bin, "steer", "extract", "--model", args.model, "--chat", "--positive",
                    EXAMPLES / "positive.txt", "--negative", EXAMPLES / "negative.txt", "--layer",
                    str(args.layer), "--position", "mean", "--out", vec], check=True)
    prompts = [p for p in (EXAMPLES / "prompts.txt").read_text().splitlines() if p.strip()]
    alphas = [float(a) for a in args.alphas.split(",")]
    rows, examples = [], {}
    t0 = time.time()
    for alpha in alphas:
        pos = neg = n = net_pos = 0
        for i, prompt in enumerate(prompts):
            cmd = [args.bin, "generate", "--model", args.model, "--chat", "--prompt", prompt, "--temperature", "0.7",
                   "--top-p", "0.95", "--seed", str(1000 + i), "--max-new-tokens", str(args.max_new_tokens),
                   "--num-return-sequences", str(args.samples), "--json"]
            if alpha != 0:
                cmd += ["--steer", str(vec), "--steer-layer", str(args.layer), "--steer-alpha", str(alpha)]
            out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            for seq in out["sequences"]:
                p, q = score(seq["text"])
                pos, neg, n, net_pos = pos + p, neg + q, n + 1, net_pos + (p > q)
                examples.setdefault(alpha, (prompt, seq["text"].strip().replace("\n", " ")))
        rows.append((alpha, n, pos / n, neg / n, net_pos / n))
        print(f"alpha {alpha:+.1f}: {n} generations, positive words {pos / n:.2f}, negative words {neg / n:.2f}, "
              f"net-positive share {net_pos / n:.0%}", file=sys.stderr)
    elapsed = time.time() - t0

    lines = [
        "# Persona steering: a measured demonstration",
        "",
        "Reproduce with `make steering-demo` (runs `scripts/steering_demo.py`, about "
        f"{elapsed / 60:.0f} minutes on the 2-core CPU machine; sampling is seeded, so a rerun gives the same table).",
        "",
        "## What was done",
        f"- Vector: `mlxgp steer extract --chat --position mean --layer {args.layer}` on the default model "
        "(SmolLM2-135M-Instruct, Q4_1 GGUF) with the 20 cheerful sentences of `examples/steering/positive.txt` "
        "against the 20 gloomy ones of `negative.txt` (contrastive activation addition: mean residual "
        f"activation after block {args.layer} over the positive set minus the same over the negative set).",
        f"- Generations: the 10 neutral prompts of `examples/steering/prompts.txt` as chat turns, "
        f"{args.samples} samples each (temperature 0.7, top-p 0.95, fixed seeds, {args.max_new_tokens} new "
        f"tokens), so {len(prompts) * args.samples} generations per alpha; the vector is added with "
        f"`--steer-alpha` at every position after block {args.layer}.",
        "- Measure: counts of words from two fixed word lists (in the script: happy/joy/love/great/... and "
        "sad/terrible/hate/awful/...), per generation, and the share of generations with more positive than "
        "negative words.",
        "",
        "| alpha | generations | positive words / gen | negative words / gen | net-positive generations |",
        "|---:|---:|---:|---:|---:|",
    ]
    for alpha, n, p, q, share in rows:
        lines.append(f"| {alpha:+.1f} | {n} | {p:.2f} | {q:.2f} | {share:.0%} |")
    lines += ["", "## One sample per alpha (first prompt's first sample)", ""]
    for alpha in alphas:
        prompt, text = examples[alpha]
        lines.append(f"- alpha {alpha:+.1f}, \"{prompt}\": {text[:300]}")
    lines += [
        "",
        "## What it does and does not show",
        "- It shows that one vector, extracted from 40 sentences in a second, moves the sentiment vocabulary "
        "of a 135M model's replies in the direction of its sign, without any fine-tuning.",
        "- A word list is a crude measure: it counts words, not meaning; negation (\"not happy\") counts as "
        "positive. Large alphas also degrade fluency (see the samples); the table does not measure that.",
        "- One model, one layer, one pair of prompt sets; other layers and concepts behave differently.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
