"""Matrix-multiply throughput of the peers' backends (MLX's own CPU ops under mlx-lm, PyTorch under
transformers): context for the generation table, since a 135M-parameter model at batch 1 spends most
of its time in these products. mlxgp runs its own CPU kernels (src/kernels/) where they apply."""
from common import ROOT
from runner import RunError, run_json

from . import Context, Table, section

WORKER = ROOT / "bench" / "workers" / "matmul_worker.py"
BACKENDS = {"mlx": "MLX ops (mlx-lm)", "torch": "PyTorch (transformers)"}


@section("matmul", "Matrix-multiply throughput (context)")
def run(ctx: Context) -> list[Table]:
    table = Table(title="Matrix multiply (M x K) @ (K x N), GFLOP/s, one process per backend",
                  columns=["backend", "M x K x N", "dtype", "GFLOP/s"])
    blas = []
    ctx.log("[matmul] " + ", ".join(BACKENDS))
    for backend, label in BACKENDS.items():
        try:
            doc = run_json([str(ctx.python), str(WORKER), backend], timeout_s=300).doc
            rows = [[label, r["shape"], r["dtype"], f"{r['gflops']:,.1f}"] for r in doc["results"]]
            blas.append(f"{label}: {doc.get('blas', 'unknown')}")
        except (RunError, KeyError, TypeError) as e:
            table.failures.append(f"matmul on {backend}: {e}")
            rows = [[label, "", f"failed: {e}", ""]]
        table.rows += rows
    table.notes = [
        "1024^3 is a plain square product; 124x576x1536 is one MLP projection of SmolLM2 over the "
        "generation prompt (prefill); 1x576x1536 is the same product for one decode step. Each figure is "
        "the mean over at least 0.5 s of repeated calls after one untimed call, with each backend's "
        "default threads.",
        "BLAS library loaded by each backend's process: " + "; ".join(blas) + ".",
        "mlxgp does not go through these MLX ops for its linear layers where its own kernels apply "
        "(src/kernels/; `MLXGP_DISABLE_KERNELS=1` falls back to MLX ops), which is why it can outrun "
        "mlx-lm on the same MLX wheel.",
    ]
    return [table]
