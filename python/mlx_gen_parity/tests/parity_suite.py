"""python -m mlx_gen_parity.tests.parity_suite --hf-model DIR --mlx-model DIR

Eight prompts, greedy and the processor / beam modes of parity_hf: tokens identical / total, max
|logit diff| and finish reasons per prompt and mode against transformers, then the totals per mode."""
import argparse

from . import _common as C

PROMPTS = [
    "hello",
    "The capital of France is",
    "Write a haiku about the sea.",
    "def fibonacci(n):",
    "Once upon a time, in a land far away,",
    "The three primary colors are",
    "Q: What is 12 times 7?\nA:",
    "List three uses of a paperclip:\n1.",
]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_common_args(p)
    a = p.parse_args(argv)

    import mlx_gen_parity as mgp

    model, tokenizer = mgp.load(a.mlx_model)
    if tokenizer is None:
        p.error("--mlx-model has no tokenizer files")
    hf = C.load_hf(a.hf_model)
    rows, totals = [], {}
    for prompt in PROMPTS:
        ids = tokenizer.encode(prompt)
        for r in C.parity_rows(mgp, model, tokenizer, hf, ids, a.max_tokens):
            rows.append([prompt[:28].replace("\n", " ")] + r)
            t = totals.setdefault(r[0], [0, 0, 0.0, 0, 0])
            n, total = map(int, r[1].split("/"))
            t[0] += n
            t[1] += total
            t[2] = max(t[2], r[2] or 0.0)
            t[3] += r[3] == "yes"
            t[4] += 1
    print(f"mlxgp: {a.mlx_model}   transformers: {a.hf_model}   max_tokens {a.max_tokens}\n")
    C.table(["prompt", "mode", "tokens identical", "max |logit diff|", "finish reasons equal"], rows)
    print("\ntotals")
    C.table(["mode", "tokens identical", "max |logit diff|", "finish reasons equal"],
            [[m, f"{t[0]}/{t[1]}", t[2], f"{t[3]}/{t[4]}"] for m, t in totals.items()])


if __name__ == "__main__":
    main()
