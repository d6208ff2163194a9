#!/usr/bin/env python3
"""Resident memory of one long `mlxgp generate` (make soak; tests/parity/test_faults.py runs it short).

Runs generate with --ignore-eos for --tokens new tokens, samples the process's VmRSS from /proc every
--every seconds, and prints the RSS at each tenth of the run plus the growth after the warm-up (the
first tenth: weights paged in, buffers allocated). With a rotating KV cache (--max-kv-size) the growth
should stay near zero however long the run; with the default cache it grows with every token."""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PROMPT = "Write a very long story about a lighthouse keeper and the sea."


def rss_mib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def soak(mlxgp, tokens, max_kv_size=None, model="default", every=0.1, input_ids=None):
    prompt = ["--input-ids", input_ids] if input_ids else ["--prompt", PROMPT]
    cmd = [str(mlxgp), "generate", "--model", model, *prompt, "--max-new-tokens", str(tokens), "--ignore-eos"]
    if max_kv_size:
        cmd += ["--max-kv-size", str(max_kv_size)]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []  # (seconds, MiB)
    while proc.poll() is None:
        r = rss_mib(proc.pid)
        if r is not None:
            samples.append((time.monotonic() - t0, r))
        time.sleep(every)
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise RuntimeError(f"generate exited {proc.returncode}: {err.strip()}")
    stats = next((line for line in err.splitlines() if line.startswith("[stats]")), "")
    seconds = time.monotonic() - t0
    tenths = []
    for k in range(1, 11):
        upto = [r for t, r in samples if t <= seconds * k / 10]
        tenths.append(round(upto[-1], 1) if upto else None)
    warm = [r for t, r in samples if t >= seconds / 10]
    base = next((r for r in tenths if r is not None), 0.0)
    return {"tokens": tokens, "max_kv_size": max_kv_size, "seconds": round(seconds, 1), "rss_mib_by_tenth": tenths,
            "peak_rss_mib": round(max(r for _, r in samples), 1) if samples else None,
            "growth_after_warmup_mib": round(max(warm) - base, 1) if warm else None, "stats": stats}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mlxgp", default=str(Path(__file__).resolve().parents[1] / "build" / "mlxgp"))
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--max-kv-size", type=int, default=512)
    ap.add_argument("--model", default="default")
    ap.add_argument("--input-ids", help="comma-separated prompt ids instead of the text prompt (models without a tokenizer)")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    r = soak(a.mlxgp, a.tokens, a.max_kv_size or None, a.model, every=0.5, input_ids=a.input_ids)
    print(f"{r['tokens']} tokens, max_kv_size {r['max_kv_size']}: {r['seconds']} s; RSS MiB by tenth of the run "
          f"{r['rss_mib_by_tenth']}; peak {r['peak_rss_mib']} MiB; growth after the first tenth "
          f"{r['growth_after_warmup_mib']} MiB\n{r['stats']}")
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
