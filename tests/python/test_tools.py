"""The seed's commands on local folders: parity_hf, parity_suite and perf_bench print their tables, and
the parity they report is what transformers gives (a tiny random model converted without loss)."""
import os
import re
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def mlx_dir(tiny_hf_tok, tmp_path_factory):
    from mlx_gen_parity.interop import convert_hf_to_mlx

    return convert_hf_to_mlx(tiny_hf_tok, local_out=tmp_path_factory.mktemp("tools") / "mlx")


def run_tool(name, *args, mlxgp_bin=None):
    env = dict(os.environ, MLXGP_BIN=str(mlxgp_bin)) if mlxgp_bin else None
    proc = subprocess.run([sys.executable, "-m", f"mlx_gen_parity.tests.{name}", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_parity_hf_table(tiny_hf_tok, mlx_dir, mlxgp_bin):
    out = run_tool("parity_hf", "--hf-model", tiny_hf_tok, "--mlx-model", mlx_dir, "--prompt", "hello",
                   "--max-tokens", "12", mlxgp_bin=mlxgp_bin)
    assert "tokens identical" in out and "mlxgp C++" in out and "mlx-lm" in out and "transformers" in out
    greedy = next(l for l in out.splitlines() if l.startswith("greedy "))
    # fp32 conversion: every greedy token identical to transformers', same finish reason
    assert re.search(r"\b(\d+)/\1\b", greedy) and " yes" in greedy, out


def test_parity_suite_and_perf_bench(tiny_hf_tok, mlx_dir, mlxgp_bin):
    out = run_tool("parity_suite", "--hf-model", tiny_hf_tok, "--mlx-model", mlx_dir, "--max-tokens", "6",
                   mlxgp_bin=mlxgp_bin)
    totals = out.split("totals")[1]
    greedy = next(l for l in totals.splitlines() if l.startswith("greedy "))
    assert re.search(r"\b(\d+)/\1\s", greedy) and re.search(r"\b8/8\b", greedy), out
    out = run_tool("perf_bench", "--hf-model", tiny_hf_tok, "--mlx-model", mlx_dir, "--prompt", "Hi there",
                   "--max-tokens", "8", mlxgp_bin=mlxgp_bin)
    for engine in ("mlxgp C++", "mlxgp Python", "mlx-lm", "transformers"):
        assert engine in out
