"""Importing mlx_gen_parity points libmlx's fp32 matmuls at OpenBLAS, as the mlxgp executable's link
order does (issue #9: decode in Python ran 7-13% behind the CLI on the mlx[cpu] wheel's bundled
reference BLAS). Each case runs in a fresh interpreter that binds libmlx's BLAS slots first (a matmul
before the import), which is the order a user's script has."""
import json
import os
import subprocess
import sys


CHILD = """
import json, numpy as np, mlx.core as mx
rng = np.random.default_rng(3)
a, b = rng.standard_normal((96, 80), dtype=np.float32), rng.standard_normal((80, 72), dtype=np.float32)
mx.eval(mx.array(a) @ mx.array(b))  # binds libmlx's cblas_sgemm before our import
import mlx_gen_parity._core as core
c = np.array(mx.array(a) @ mx.array(b))
print(json.dumps({"interposed": core.openblas_interposed, "library": core.mlx_sgemm_library(),
                  "max_diff": float(np.abs(c - a.astype(np.float64) @ b.astype(np.float64)).max())}))
"""


def run_child(keep: bool) -> dict:
    env = dict(os.environ)
    env.pop("MLXGP_KEEP_MLX_BLAS", None)
    if keep:
        env["MLXGP_KEEP_MLX_BLAS"] = "1"
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_rebinds_libmlx_gemm_to_openblas(mgp):
    if sys.platform != "linux":  # the interposition is Linux-only (MLXGP_INTERPOSE_OPENBLAS defaults off)
        assert not mgp._core.openblas_interposed
        return
    # scripts/setup.sh installs libopenblas-dev, so the Linux build links it.
    assert mgp._core.openblas_library, "extension built without OpenBLAS (MLXGP_INTERPOSE_OPENBLAS off?)"
    got = run_child(keep=False)
    assert got["interposed"] is True
    assert "openblas" in os.path.basename(got["library"]), got["library"]
    assert got["max_diff"] < 1e-3  # the rebound call computes the right product


def test_opt_out_keeps_bundled_blas(mgp):
    got = run_child(keep=True)
    assert got["interposed"] is False
    assert "openblas" not in os.path.basename(got["library"]), got["library"]
    assert got["library"]  # libmlx is loaded and its slot resolves to some library
    assert got["max_diff"] < 1e-3
