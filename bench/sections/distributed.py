"""Distributed runs on this machine's two cores: LoRA training tokens/s of `mlxgp train` at 1 and 2 ranks
(data parallel, `--distributed`) beside mlx-lm's LoRA trainer at 1 and 2 ranks, and decode tokens/s of
`mlxgp generate` at 1 and 2 ranks (tensor parallel, `--tensor-parallel`), all launched with `mlx.launch
--backend ring`; plus the bytes each step sends (docs/distributed.md turns them into expected scaling
across machines). Two ranks on two cores split the cores, so these figures measure the overhead of the
collectives, not a speed-up."""
import json
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from common import HF_F32_DIR, PYTHON, ROOT

from . import Context, Table, section

LAUNCH = PYTHON.parent / "mlx.launch"
MLX_LM_LORA = PYTHON.parent / "mlx_lm.lora"
# mlx-lm trains at about 5 tokens/s on this CPU (docs/performance.md), so its runs are kept short.
DATA = ROOT / "tests" / "data" / "train" / "harbour_train.txt"
BATCH, SEQ_LEN, RANK, STEPS, REPORT = 4, 128, 8, 6, 3
NEW_TOKENS = 64
TIMEOUT_S = 900


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return min(s.getsockname()[1], 60000)


def _launch(ranks: int, cmd: list[str]) -> str:
    """`cmd` alone (1 rank) or under `mlx.launch -n ranks --backend ring`; returns stdout + stderr."""
    if ranks > 1:
        cmd = [str(LAUNCH), "-n", str(ranks), "--backend", "ring", "--starting-port", str(_port()), "--", *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    out = p.stdout + p.stderr
    if p.returncode != 0 or "exited with code" in out:
        raise RuntimeError(f"{' '.join(cmd[:12])} ...: exit {p.returncode}: {out[-1500:]}")
    return out


def _train_mlxgp(ctx: Context, tmp: Path, data: Path, ranks: int) -> float:
    log = tmp / f"mlxgp-{ranks}.jsonl"
    cmd = [str(ctx.mlxgp_bin), "train", "--model", str(HF_F32_DIR), "--data", str(data), "--mode", "lora",
           "--steps", str(STEPS), "--batch-size", str(BATCH), "--seq-len", str(SEQ_LEN), "--lr", "1e-4",
           "--lora-rank", str(RANK), "--lora-targets", "q_proj,v_proj", "--log-json", str(log),
           "--out", str(tmp / f"mlxgp-out-{ranks}")] + (["--distributed"] if ranks > 1 else [])
    _launch(ranks, cmd)
    steps = [json.loads(l) for l in log.read_text().splitlines()]
    window = steps[REPORT:]
    return sum(s["n_tokens"] for s in window) / (steps[-1]["seconds"] - steps[REPORT - 1]["seconds"])


def _train_mlx_lm(ctx: Context, tmp: Path, ranks: int) -> float:
    cfg = tmp / f"lora-{ranks}.yaml"
    cfg.write_text(
        f"model: {HF_F32_DIR}\ntrain: true\ndata: {tmp}\nfine_tune_type: lora\nnum_layers: -1\n"
        f"batch_size: {BATCH}\niters: {STEPS}\nsteps_per_report: {REPORT}\nsteps_per_eval: 100000\n"
        f"val_batches: 1\nlearning_rate: 1e-4\nmax_seq_length: {SEQ_LEN}\nadapter_path: {tmp / f'mlx-lm-{ranks}'}\n"
        f"lora_parameters:\n  keys: ['self_attn.q_proj', 'self_attn.v_proj']\n  rank: {RANK}\n"
        f"  scale: 2.0\n  dropout: 0.0\n")
    out = re.sub(r"\x1b\[[0-9;]*m", "", _launch(ranks, [str(MLX_LM_LORA), "-c", str(cfg)]))
    rows = re.findall(r"^\s*(\d+)\s+([\d.]+)\s+\S+\s+([\d.]+)\s+[\d.]+k?\s*$", out, re.M)
    if not rows:
        raise RuntimeError("no training report in mlx_lm output:\n" + out[-2000:])
    return float(rows[-1][2])


def _decode(ctx: Context, model: str, dtype: list[str], ranks: int) -> float:
    cmd = [str(ctx.mlxgp_bin), "generate", "--model", model, *dtype, "--prompt", "The harbour at dawn",
           "--max-new-tokens", str(NEW_TOKENS), "--ignore-eos"] + (["--tensor-parallel"] if ranks > 1 else [])
    out = _launch(ranks, cmd)
    m = re.search(r"\(([\d.]+) tok/s decode\)", out)
    if not m:
        raise RuntimeError("no [stats] line:\n" + out[-1500:])
    return float(m.group(1))


def _decode_mlx_lm(ranks: int) -> float | str:
    """mlx-lm's decode tok/s of the fp32 folder, sharded with model.shard() on 2 ranks; or its error."""
    worker = ROOT / "bench" / "workers" / "mlx_lm_sharded_worker.py"
    cmd = [str(PYTHON), str(worker), str(HF_F32_DIR), "The harbour at dawn", str(NEW_TOKENS)]
    if ranks > 1:
        cmd = [str(LAUNCH), "-n", str(ranks), "--backend", "ring", "--starting-port", str(_port()), "--python",
               str(PYTHON), *cmd[1:]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    lines = [l for l in p.stdout.splitlines() if l.startswith(("decode_tok_s", "error"))]
    if not lines:
        raise RuntimeError(f"exit {p.returncode}: {(p.stdout + p.stderr)[-1500:]}")
    return lines[-1][len("error "):] if lines[-1].startswith("error") else float(lines[-1].split()[1])


def _measure(ctx: Context, table: Table, label: str, fn, sent: str = "") -> None:
    """Rows of `label` at 1 and 2 ranks. fn(ranks) gives tokens/s, or a text saying why the engine refused
    (reported as the row); `sent`: the bytes all-summed per step, shown on the 2-rank row."""
    base = None
    for ranks in (1, 2):
        try:
            value = fn(ranks)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
            table.failures.append(f"{label} {ranks} ranks: {str(err)[-500:]}")
            continue
        shown = value if isinstance(value, str) else f"{value:.1f} tok/s"
        ctx.log(f"  [distributed] {label} on {ranks} rank(s): {shown}")
        if isinstance(value, str):
            table.rows.append([label, ranks, value, "", ""])
            continue
        base = base or value
        table.rows.append([label, ranks, f"{value:.1f}", f"{value / base:.2f}x", sent if ranks > 1 else ""])


@section("distributed", "Distributed runs (ring backend, this machine)")
def run(ctx: Context) -> list[Table]:
    train = Table(title=f"LoRA training, data parallel (rank {RANK}, q_proj+v_proj, global batch {BATCH}, "
                        f"seq {SEQ_LEN}, fp32 SmolLM2-135M, steps {REPORT + 1}-{STEPS})",
                  columns=["engine", "ranks", "tokens/s", "vs 1 rank", "bytes all-summed per step"])
    gen = Table(title=f"Decode, tensor parallel (SmolLM2-135M, {NEW_TOKENS} new tokens)",
                columns=["engine", "ranks", "decode tok/s", "vs 1 rank", "bytes all-summed per token"])
    if missing := ctx.mlxgp_missing():
        train.failures.append(missing)
        return [train, gen]
    lora_params = 30 * RANK * ((576 + 576) + (576 + 192))  # A and B of q_proj (576->576) and v_proj (576->192)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        lines = [l for l in DATA.read_text().splitlines() if l.strip()]
        rows = "".join(json.dumps({"text": l}) + "\n" for l in lines)
        (tmp / "train.jsonl").write_text(rows)
        (tmp / "valid.jsonl").write_text("".join(rows.splitlines(keepends=True)[:BATCH]))
        sent = f"{(lora_params + 2) * 4:,}"
        _measure(ctx, train, "mlxgp", lambda r: _train_mlxgp(ctx, tmp, tmp / "train.jsonl", r), sent)
        _measure(ctx, train, "mlx-lm", lambda r: _train_mlx_lm(ctx, tmp, r))
    # Two all_sums of one hidden vector (576 floats) per layer: after o_proj and after down_proj.
    sent = f"{30 * 2 * 576 * 4:,}"
    _measure(ctx, gen, "mlxgp fp32", lambda r: _decode(ctx, "default", ["--dtype", "float32"], r), sent)
    _measure(ctx, gen, "mlxgp Q4_1 as stored", lambda r: _decode(ctx, "default", [], r), sent)
    _measure(ctx, gen, "mlx-lm fp32", _decode_mlx_lm)
    train.notes.append("Bytes per step: one all_sum of every LoRA gradient plus the loss and token count (float32), "
                       "whatever the batch; a ring all-reduce sends 2 (N - 1) / N of that per rank.")
    gen.notes.append("mlx-lm's model.shard() splits q/k/v rows evenly and divides the head counts by the ranks, "
                     "so SmolLM2-135M's 9 heads in 3 KV groups cannot be split over 2 ranks there; mlxgp splits by "
                     "KV group (6 + 3 heads).")
    gen.notes.append("Both ranks share this machine's two cores (one each), so the 2-rank figures show the cost of "
                     "60 collectives per token over TCP on one machine, not a speed-up.")
    return [train, gen]
