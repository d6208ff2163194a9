"""Command-line parity and speed checks against transformers and mlx-lm on local folders (offline):
python -m mlx_gen_parity.tests.parity_hf | parity_suite | perf_bench --hf-model DIR --mlx-model DIR."""
