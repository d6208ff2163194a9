"""python -m mlx_gen_parity.tests.perf_bench --hf-model DIR --mlx-model DIR --prompt P --max-tokens 64

Greedy decode speed of mlxgp C++ (the CLI), mlxgp Python, mlx-lm and transformers on one prompt, with
each engine's tokens compared to transformers'."""
import argparse

from . import _common as C
from .parity_hf import speed_table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_common_args(p)
    p.add_argument("--prompt", required=True)
    a = p.parse_args(argv)

    import mlx_gen_parity as mgp

    model, tokenizer = mgp.load(a.mlx_model)
    if tokenizer is None:
        p.error("--mlx-model has no tokenizer files")
    ids = tokenizer.encode(a.prompt)
    hf = C.load_hf(a.hf_model)
    mgp.generate(model, tokenizer, ids, max_tokens=4)  # warm-up
    print(f"prompt: {a.prompt!r} ({len(ids)} tokens), max_tokens {a.max_tokens}\n")
    speed_table(mgp, model, tokenizer, hf, ids, a)


if __name__ == "__main__":
    main()
