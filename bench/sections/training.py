"""LoRA training speed: tokens/s and peak memory of `mlxgp train --mode lora` against mlx-lm's LoRA trainer
(`python -m mlx_lm lora`) on the same fp32 model folder, data, batch size, rank and target layers, same run."""
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from common import HF_F32_DIR, ROOT

from . import Context, Table, section

DATA = ROOT / "tests" / "data" / "train" / "harbour_train.txt"
BATCH, SEQ_LEN, RANK, ALPHA = 2, 128, 8, 16.0
ITERS, REPORT = 6, 3  # the speed is taken over iterations 4-6 (the first ones include warm-up)
TIMEOUT_S = 900


def _write_data(folder: Path) -> Path:
    lines = [l for l in DATA.read_text().splitlines() if l.strip()]
    rows = "".join(json.dumps({"text": l}) + "\n" for l in lines)
    (folder / "train.jsonl").write_text(rows)
    # mlx-lm wants at least a batch of validation examples (it runs one validation batch first).
    (folder / "valid.jsonl").write_text("".join(rows.splitlines(keepends=True)[:BATCH]))
    return folder / "train.jsonl"


def _run(cmd: list[str]) -> tuple[str, float]:
    """Runs cmd; returns its stdout and its max RSS in GB (wait4's rusage, the same figure for both engines)."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + TIMEOUT_S
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"timed out after {TIMEOUT_S} s")
            time.sleep(0.2)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"exit {os.waitstatus_to_exitcode(status)}: {text[-1500:]}")
    return text, usage.ru_maxrss * 1024 / 1e9


def _mlxgp(ctx: Context, tmp: Path, data: Path) -> tuple[float, float]:
    log = tmp / "mlxgp.jsonl"
    _, rss = _run([str(ctx.mlxgp_bin), "train", "--model", str(HF_F32_DIR), "--data", str(data), "--mode", "lora",
                    "--steps", str(ITERS), "--batch-size", str(BATCH), "--seq-len", str(SEQ_LEN), "--lr", "1e-4",
                    "--lora-rank", str(RANK), "--lora-alpha", str(ALPHA), "--lora-targets", "q_proj,v_proj",
                    "--log-json", str(log), "--out", str(tmp / "mlxgp-out")])
    steps = [json.loads(l) for l in log.read_text().splitlines()]
    window = steps[REPORT:]
    tokens = sum(s["n_tokens"] for s in window)
    return tokens / (steps[-1]["seconds"] - steps[REPORT - 1]["seconds"]), rss


def _mlx_lm(ctx: Context, tmp: Path) -> tuple[float, float]:
    cfg = tmp / "lora.yaml"
    cfg.write_text(
        f"model: {HF_F32_DIR}\ntrain: true\ndata: {tmp}\nfine_tune_type: lora\nnum_layers: -1\n"
        f"batch_size: {BATCH}\niters: {ITERS}\nsteps_per_report: {REPORT}\nsteps_per_eval: 100000\n"
        f"val_batches: 1\nlearning_rate: 1e-4\nmax_seq_length: {SEQ_LEN}\nadapter_path: {tmp / 'mlx-lm-out'}\n"
        f"lora_parameters:\n  keys: ['self_attn.q_proj', 'self_attn.v_proj']\n  rank: {RANK}\n"
        f"  scale: {ALPHA / RANK}\n  dropout: 0.0\n")
    out, rss = _run([str(ctx.python), "-m", "mlx_lm", "lora", "-c", str(cfg)])
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    # mlx-lm 0.32 prints a table: "iter  train_loss  tok/s  tokens" (validation rows say "val").
    rows = re.findall(r"^\s*(\d+)\s+([\d.]+)\s+\S+\s+([\d.]+)\s+[\d.]+k?\s*$", plain, re.M)
    if not rows:
        raise RuntimeError("no training report in mlx_lm output:\n" + plain[-2000:])
    return float(rows[-1][2]), rss


@section("training", "LoRA training")
def run(ctx: Context) -> list[Table]:
    table = Table(title=f"LoRA training (rank {RANK}, q_proj+v_proj of every layer, batch {BATCH}, "
                        f"fp32 folder, iterations {REPORT + 1}-{ITERS})",
                  columns=["engine", "tokens/s", "max RSS GB", "mlxgp / engine tokens/s"])
    if missing := ctx.mlxgp_missing():
        table.failures.append(missing)
        return [table]
    results = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        data = _write_data(tmp)
        for name, fn in (("mlxgp", lambda: _mlxgp(ctx, tmp, data)), ("mlx-lm", lambda: _mlx_lm(ctx, tmp))):
            try:
                start = time.time()
                results[name] = fn()
                ctx.log(f"  [training] {name}: {results[name][0]:.1f} tok/s, peak {results[name][1]:.2f} GB "
                        f"({time.time() - start:.0f} s)")
            except (RuntimeError, OSError, ValueError) as err:
                table.failures.append(f"{name}: {str(err)[-500:]}")
    base = results.get("mlxgp", (None,))[0]
    for name, (tps, mem) in results.items():
        ratio = "" if name == "mlxgp" or not base else f"{base / tps:.2f}x"
        table.rows.append([name, f"{tps:.1f}", f"{mem:.2f}", ratio])
    table.notes.append("Tokens/s counts the tokens each trainer reports (mlxgp: target tokens; mlx-lm: non-padding "
                       "tokens), over the same iterations; one text line per example, same data for both.")
    return [table]
