"""python -m mlx_gen_parity.tests.perf_bench --hf-model DIR --mlx-model DIR --prompt P --max-tokens 64

Greedy decode speed of mlxgp C++ (the CLI), mlxgp Python, mlx-lm and transformers on one prompt, with
each engine's tokens compared to transformers'."""
from . import _common as C
from .parity_hf import speed_table


def main(argv=None):
    a, mgp, model, tokenizer, ids, hf = C.setup_one_prompt(__doc__, argv)
    mgp.generate(model, tokenizer, ids, max_tokens=4)  # warm-up
    print(f"prompt: {a.prompt!r} ({len(ids)} tokens), max_tokens {a.max_tokens}\n")
    speed_table(mgp, model, tokenizer, hf, ids, a)


if __name__ == "__main__":
    main()
