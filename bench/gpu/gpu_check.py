"""GPU check of the CUDA build (mlx[cuda13]) on a lent NVIDIA machine: the C++ unit tests on the GPU,
the main job (generation with the default model), logits and greedy parity against transformers on
CUDA, decode speed side by side with mlx-lm and transformers in the same run, and batched decode
(B distinct prompts, `--prompts-file`) side by side with mlx-lm's batch_generate.

Runs on the device machine after bench/gpu/device_setup.sh unpacked the payload that
bench/gpu/make_payload.sh built here (the mlx-cuda-13 wheel, the project binaries linked against it,
mlx-lm, gguf and the default GGUF). Usage (there):
    python3 bench/gpu/gpu_check.py --root /tmp/mlxgp-gpu --out DIR [--deadline-s 420]
Prints one table per part and writes DIR/gpu_report.json. Each part is independent: a failing part is
reported and the next one runs; the speed loop stops at the deadline with what it measured."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
sys.path.insert(0, str(BENCH))

PROMPT = "Write a haiku about the sea."
TORCH_DEVICE = "cuda"


def run(argv, timeout, env=None, check=False):
    t0 = time.perf_counter()
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    if check and p.returncode != 0:
        raise RuntimeError(f"{argv[0]} exit {p.returncode}: {p.stderr.strip()[-800:]}")
    return p, time.perf_counter() - t0


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def device_info(report):
    p, _ = run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], 30)
    report["gpu"] = p.stdout.strip()
    code = "import mlx.core as mx; print(mx.__version__, mx.default_device(), mx.device_info())"
    p, _ = run([sys.executable, "-c", code], 120)
    report["mlx"] = (p.stdout or p.stderr).strip()[-600:]
    print(f"GPU: {report['gpu']}\nMLX: {report['mlx']}", flush=True)


def link_fixtures(root: Path) -> None:
    """The test binaries open fixtures at the paths compiled in here (make_payload.sh records them):
    point those paths at the unpacked cache and this checkout's tests/data where they do not exist."""
    paths = json.loads((root / "bin" / "compiled_paths.json").read_text())
    for compiled, actual in ((paths["cache_dir"], root / "cache"), (paths["test_data_dir"], BENCH.parent / "tests" / "data")):
        c = Path(compiled)
        if not c.exists() and c.resolve() != actual.resolve():
            c.parent.mkdir(parents=True, exist_ok=True)
            c.symlink_to(actual)


def unit_tests(bin_dir: Path, deadline: float, report):
    """The gtest binaries with MLX's default device = the GPU (a CUDA build's default), fp32 matmuls in
    full precision (MLX_ENABLE_TF32=0, what the CLI and the Python package set by default)."""
    link_fixtures(bin_dir.parent)
    rows = []
    for exe in sorted(bin_dir.glob("test_*")):
        left = deadline - time.monotonic()
        if left < 10:
            rows.append({"binary": exe.name, "note": "not run (deadline)"})
            continue
        try:
            p, dt = run([exe, "--gtest_brief=1"], min(180, left), env={"MLX_ENABLE_TF32": "0"})
        except subprocess.TimeoutExpired:
            rows.append({"binary": exe.name, "passed": 0, "failed": None, "note": "timeout"})
            continue
        out = p.stdout + p.stderr
        total = passed = skipped = 0
        failures = []
        for line in out.splitlines():
            words = line.split()
            if line.startswith("[==========]") and len(words) > 2 and words[2] == "tests" and words[3] == "from":
                total = int(words[1])
            elif line.startswith("[  PASSED  ]"):
                passed = int(words[3])
            elif line.startswith("[  SKIPPED ]") and len(words) > 4 and words[4].startswith("test"):
                skipped = int(words[3])
            elif line.startswith("[  FAILED  ]") and len(words) > 3 and "." in words[3]:
                failures.append(words[3])
        failed = total - passed - skipped
        if p.returncode != 0 and failed == 0:
            failures.append(f"exit {p.returncode}: {out.strip()[-300:]}")
        fails = sorted(set(failures))
        rows.append({"binary": exe.name, "total": total, "passed": passed, "skipped": skipped, "failed": failed,
                     "seconds": round(dt, 1), "failures": fails[:40], "tail": out.strip()[-1500:] if fails else ""})
        print(f"  {exe.name:18} passed {passed:4}/{total:<4} skipped {skipped:2} failed {failed:3} ({dt:.1f} s) "
              f"{' '.join(fails[:8])}", flush=True)
    report["unit_tests"] = rows


def main_job(mlxgp: Path, gguf: Path, report):
    """`mlxgp generate --model <default GGUF> --chat`, on the GPU and (same binary) on the CPU."""
    res = {}
    for dev in ("gpu", "cpu"):
        p, dt = run([mlxgp, "generate", "--model", gguf, "--chat", "--prompt", PROMPT, "--max-new-tokens", "64",
                     "--json"], 150, env={"MLXGP_DEVICE": dev})
        if p.returncode != 0:
            res[dev] = {"error": p.stderr.strip()[-400:]}
            continue
        j = last_json(p.stdout)
        seq = j["sequences"][0]
        res[dev] = {"text": seq.get("text"), "tokens": seq["token_ids"], "finish_reason": seq.get("finish_reason"),
                    "decode_tok_s": j["stats"].get("decode_tokens_per_s"), "wall_s": round(dt, 1)}
    if "tokens" in res.get("gpu", {}) and "tokens" in res.get("cpu", {}):
        a, b = res["gpu"]["tokens"], res["cpu"]["tokens"]
        res["gpu_vs_cpu_identical"] = sum(x == y for x, y in zip(a, b)) if len(a) == len(b) else \
            f"lengths {len(a)} / {len(b)}"
        res["first_difference"] = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    report["main_job"] = res
    print(json.dumps({k: (v if not isinstance(v, dict) else {kk: vv for kk, vv in v.items() if kk != 'tokens'})
                      for k, v in res.items()}, indent=1), flush=True)


def logits_parity(mlxgp: Path, hf_dir: Path, ids, work: Path, report):
    """mlxgp logits (prefill + cached decode, on the GPU) against transformers' full forward, fp32, on
    CUDA (TF32 off) and on the CPU."""
    import numpy as np
    import torch
    import transformers
    from safetensors.numpy import load_file

    torch.backends.cuda.matmul.allow_tf32 = False
    res = {}
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    refs = {}
    for dev in dict.fromkeys((TORCH_DEVICE, "cpu")):
        m = model.to(dev)
        with torch.inference_mode():
            refs[dev] = m(torch.tensor([ids], device=dev)).logits[0].float().cpu().numpy().astype(np.float64)
    for tf32 in ("0", "1"):  # the CLI's default (full fp32), then MLX's own default (TF32)
        out = work / f"logits-tf32-{tf32}.safetensors"
        p, _ = run([mlxgp, "logits", "--model", hf_dir, "--input-ids", ",".join(map(str, ids)), "--out", out], 300,
                   env={"MLX_ENABLE_TF32": tf32})
        if p.returncode != 0:
            res[f"tf32={tf32}"] = {"error": p.stderr.strip()[-400:]}
            continue
        ours = load_file(str(out))["logits"].astype(np.float64)
        out.unlink()
        for dev, ref in refs.items():
            res[f"tf32={tf32} max_abs_diff_vs_transformers_{dev}"] = float(np.abs(ours - ref).max())
            res[f"tf32={tf32} argmax_identical_{dev}"] = f"{int((ours.argmax(-1) == ref.argmax(-1)).sum())}/{len(ids)}"
    report["logits"] = res
    print(f"  logits (fp32, {len(ids)} positions): {res}", flush=True)


def greedy_parity(mlxgp: Path, hf_dir: Path, ids, n: int, report):
    """Greedy tokens: mlxgp on the GPU against transformers on CUDA, fp32, EOS ignored."""
    import torch
    import transformers

    torch.backends.cuda.matmul.allow_tf32 = False
    p, _ = run([mlxgp, "generate", "--model", hf_dir, "--input-ids", ",".join(map(str, ids)),
                "--max-new-tokens", n, "--ignore-eos", "--json"], 300, check=True)
    ours = last_json(p.stdout)["sequences"][0]["token_ids"]
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).to(TORCH_DEVICE).eval()
    x = torch.tensor([ids], device=TORCH_DEVICE)
    with torch.inference_mode():
        ref = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=n,
                             eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()
    same = sum(a == b for a, b in zip(ours, ref))
    first = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), None)
    report["greedy"] = {"identical": f"{same}/{n}", "first_difference": first}
    print(f"  greedy fp32 GPU vs transformers CUDA: {same}/{n} identical (first difference {first})", flush=True)


def speed(mlxgp: Path, models: dict, ids, n: int, reps: int, deadline: float, report):
    """Decode tok/s (first to last generated token), fresh process per run, engines interleaved."""
    workers = BENCH / "workers"
    idarg = ",".join(map(str, ids))
    engines = {
        "mlxgp Q4_1 GGUF": [mlxgp, "generate", "--model", models["gguf"], "--input-ids", idarg,
                            "--max-new-tokens", n, "--ignore-eos", "--json"],
        "mlx-lm 4-bit g64": [sys.executable, workers / "mlx_lm_worker.py", models["q4"], idarg, n],
        "mlxgp fp32": [mlxgp, "generate", "--model", models["f32"], "--input-ids", idarg, "--max-new-tokens", n,
                       "--ignore-eos", "--json"],
        "mlx-lm fp32": [sys.executable, workers / "mlx_lm_worker.py", models["f32"], idarg, n],
        "transformers fp32 cuda": [sys.executable, workers / "transformers_worker.py", models["f32"], idarg, n],
        "mlxgp bf16": [mlxgp, "generate", "--model", models["f32"], "--dtype", "bfloat16", "--input-ids", idarg,
                       "--max-new-tokens", n, "--ignore-eos", "--json"],
        "transformers bf16 cuda": [sys.executable, workers / "transformers_worker.py", models["f32"], idarg, n],
    }
    envs = {"transformers fp32 cuda": {"BENCH_TORCH_DEVICE": TORCH_DEVICE},
            "transformers bf16 cuda": {"BENCH_TORCH_DEVICE": TORCH_DEVICE, "BENCH_TORCH_DTYPE": "bfloat16"}}
    got = {k: {"decode": [], "prefill": []} for k in engines}
    for rep in range(reps):
        for name, argv in engines.items():
            if time.monotonic() > deadline:
                break
            try:
                p, dt = run(argv, 180, env=envs.get(name))
            except subprocess.TimeoutExpired:
                print(f"  {name}: timeout", flush=True)
                continue
            if p.returncode != 0:
                print(f"  {name}: exit {p.returncode} {p.stderr.strip()[-300:]}", flush=True)
                continue
            st = last_json(p.stdout)["stats"]
            got[name]["decode"].append(st["decode_tokens_per_s"])
            got[name]["prefill"].append(st["prefill_tokens_per_s"])
            print(f"  run {rep + 1} {name:24} decode {st['decode_tokens_per_s']:8.1f} tok/s  "
                  f"prefill {st['prefill_tokens_per_s']:8.1f} tok/s  ({dt:.1f} s)", flush=True)
    rows = {k: {"decode_median": statistics.median(v["decode"]), "prefill_median": statistics.median(v["prefill"]),
                "runs": len(v["decode"])} for k, v in got.items() if v["decode"]}
    for mine, peers in (("mlxgp Q4_1 GGUF", ["mlx-lm 4-bit g64"]),
                        ("mlxgp fp32", ["mlx-lm fp32", "transformers fp32 cuda"]),
                        ("mlxgp bf16", ["transformers bf16 cuda"])):
        for peer in peers:
            if mine in rows and peer in rows:
                rows[mine][f"decode_vs_{peer}"] = round(rows[mine]["decode_median"] / rows[peer]["decode_median"], 3)
    report["speed"] = {"prompt_tokens": len(ids), "new_tokens": n, "rows": rows}
    print(json.dumps(report["speed"], indent=1), flush=True)


# The batching part's engines: key -> which of the models it runs.
BATCH_ENGINES = {"mlxgp gguf-q4_1": "gguf", "mlx-lm mlx-q4": "q4", "mlxgp hf-f32": "f32", "mlx-lm hf-f32": "f32"}


def batching(mlxgp: Path, models: dict, ids, n: int, sizes, engine_keys, reps: int, deadline: float, report):
    """Aggregate tok/s of B distinct prompts decoded together (the bench's batching section, same prompts
    and measurement): mlxgp `generate --prompts-file` and mlx-lm's batch_generate, on the GPU."""
    import tempfile
    from types import SimpleNamespace

    from sections.batching import Engine, _measure_once, _requests, _write_requests

    ctx = SimpleNamespace(mlxgp_bin=mlxgp, python=sys.executable)
    engines = [Engine(name, config, models[BATCH_ENGINES[f"{name} {config}"]])
               for name, config in (k.split(" ", 1) for k in BATCH_ENGINES)]
    if engine_keys:
        engines = [e for e in engines if e.key in engine_keys]
    prompts = _requests(ids)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for b in sizes:
            req = _write_requests(Path(tmp) / f"b{b}.jsonl", prompts[:b])
            for e in engines:
                for rep in range(reps):  # repeats show whether a slow run was one-off (JIT) or steady
                    if time.monotonic() > deadline:
                        break
                    try:
                        r = _measure_once(ctx, e, req, b, n)
                    except Exception as ex:  # RunError or a timeout: report it, go on
                        print(f"  {e.key} B={b}: {ex}", flush=True)
                        continue
                    decode = r.decode()  # None: no decode step (one new token)
                    decode = round(decode, 1) if decode is not None else None
                    row = {"aggregate": round(r.aggregate(), 1), "decode": decode, "seconds": round(r.seconds, 2),
                           "wall_s": round(r.wall_s, 1)}
                    if rep == 0:
                        rows.setdefault(e.key, {})[b] = row
                    else:
                        rows[e.key][b].setdefault("repeats", []).append(row)
                    print(f"  {e.key:22} B={b:2}  aggregate {r.aggregate():8.1f} tok/s  decode {decode} tok/s  "
                          f"({r.seconds:.2f} s generate, {r.wall_s:.1f} s process)", flush=True)
    for key, row in rows.items():
        if 1 in row:
            for b in row:
                row[b]["aggregate_vs_b1"] = round(row[b]["aggregate"] / row[1]["aggregate"], 2)
    for mine, peer in (("mlxgp gguf-q4_1", "mlx-lm mlx-q4"), ("mlxgp hf-f32", "mlx-lm hf-f32")):
        for b, v in rows.get(mine, {}).items():
            if b in rows.get(peer, {}):
                v[f"aggregate_vs_{peer}"] = round(v["aggregate"] / rows[peer][b]["aggregate"], 2)
    report["batching"] = {"new_tokens": n, "rows": rows}
    print(json.dumps(report["batching"], indent=1), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True, help="where device_setup.sh unpacked the payload")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--deadline-s", type=float, default=420)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--torch-device", default="cuda", help="transformers' device (cpu for a dry run here)")
    ap.add_argument("--batch-new-tokens", type=int, default=128)
    ap.add_argument("--batch-sizes", default="1,4,8,16", help="comma-separated B for the batching part (1 to 16)")
    ap.add_argument("--batch-engines", default="",
                    help="comma-separated engine keys for the batching part, e.g. 'mlxgp gguf-q4_1' (default: all)")
    ap.add_argument("--batch-reps", type=int, default=1, help="runs per engine and B in the batching part")
    ap.add_argument("--skip", default="",
                    help="comma-separated parts to skip: tests,main,prepare,logits,greedy,speed,batching")
    a = ap.parse_args()
    deadline = time.monotonic() + a.deadline_s
    global TORCH_DEVICE
    TORCH_DEVICE = a.torch_device
    skip = set(filter(None, a.skip.split(",")))
    os.environ["MLXGP_CACHE"] = str(a.root / "cache")
    from common import DEFAULT_GGUF, HF_F32_DIR, MLX_Q4_DIR  # after MLXGP_CACHE
    from sections.batching import PROMPT_LENGTHS

    sizes = [int(b) for b in a.batch_sizes.split(",") if b.strip()]
    if any(not 1 <= b <= len(PROMPT_LENGTHS) for b in sizes):  # before any device time is spent
        ap.error(f"--batch-sizes: each B must be 1 to {len(PROMPT_LENGTHS)} (the bench's prompts)")

    engine_keys = [k.strip() for k in a.batch_engines.split(",") if k.strip()]
    if unknown := [k for k in engine_keys if k not in BATCH_ENGINES]:
        ap.error(f"--batch-engines: unknown {', '.join(map(repr, unknown))} (one of {', '.join(BATCH_ENGINES)})")

    mlxgp, report = a.root / "bin" / "mlxgp", {"started": time.strftime("%Y-%m-%d %H:%M:%S")}
    a.out.mkdir(parents=True, exist_ok=True)

    def part(name, fn, *args):
        if name in skip:
            return
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            fn(*args)
        except Exception as e:  # one part's failure must not cost the others (device time is scarce)
            report.setdefault("errors", {})[name] = f"{type(e).__name__}: {str(e)[-600:]}"
            print(f"  FAILED: {report['errors'][name]}", flush=True)
        report.setdefault("seconds", {})[name] = round(time.perf_counter() - t0, 1)
        (a.out / "gpu_report.json").write_text(json.dumps(report, indent=1))

    part("info", device_info, report)
    part("main", main_job, mlxgp, DEFAULT_GGUF, report)
    # The fp32 HF folder (transformers dequantizes the GGUF) and mlx-lm's 4-bit folder, as `make bench`.
    prep = ("import prepare_models as p; from common import HF_F32_DIR, MLX_Q4_DIR; "
            "p._build_atomically(HF_F32_DIR, p.build_hf_f32); p._build_atomically(MLX_Q4_DIR, p.build_mlx_q4)")
    part("prepare", lambda: run([sys.executable, "-c", prep], 300, env={"PYTHONPATH": os.pathsep.join(
        [str(BENCH)] + os.environ.get("PYTHONPATH", "").split(os.pathsep))}, check=True))
    from prompt import prompt_ids

    ids = prompt_ids(HF_F32_DIR / "tokenizer.json") if HF_F32_DIR.exists() else []
    work = a.out
    part("logits", logits_parity, mlxgp, HF_F32_DIR, ids, work, report)
    part("greedy", greedy_parity, mlxgp, HF_F32_DIR, ids, 64, report)
    # Speed may use 40% of what is left, batching 40% of the rest; the unit tests get the remainder.
    models = {"gguf": DEFAULT_GGUF, "f32": HF_F32_DIR, "q4": MLX_Q4_DIR}
    speed_deadline = time.monotonic() + 0.4 * max(0.0, deadline - time.monotonic())
    part("speed", speed, mlxgp, models, ids, a.new_tokens, a.reps, speed_deadline, report)
    share = 0.4 if "tests" not in skip else 1.0  # without the unit tests, batching may use all that is left
    batch_deadline = time.monotonic() + share * max(0.0, deadline - time.monotonic())
    part("batching", batching, mlxgp, models, ids, a.batch_new_tokens, sizes,
         engine_keys, max(1, a.batch_reps), batch_deadline, report)
    part("tests", unit_tests, a.root / "bin", deadline, report)


if __name__ == "__main__":
    main()
