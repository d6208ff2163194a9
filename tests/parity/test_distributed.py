"""Distributed runs on MLX's ring backend, two processes on this machine (docs/distributed.md).

The reference for a distributed run is the same command in one process: tensor-parallel generation
must give the single process's logits (within 1e-4) and greedy tokens; data-parallel training on 2
ranks x batch B must follow the single process's loss trajectory on batch 2B and end at its weights.
The ranks are started by `mlx.launch` as users do, or by hand with the variables mlx.launch sets
(MLX_RANK, MLX_HOSTFILE) where a test needs to kill one rank or give the ranks different settings."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import tiny_models
from ring_ports import free_ports

LAUNCH = Path(sys.executable).parent / "mlx.launch"
IDS = [1, 17, 230, 45, 99, 310, 7, 402, 58, 120, 33, 271]



def launch(mlxgp_bin, *args, n=2, timeout=600, env=None):
    """`mlx.launch -n 2 --backend ring -- mlxgp ARGS`: the launch line the docs show."""
    cmd = [str(LAUNCH), "-n", str(n), "--backend", "ring", "--starting-port", str(free_ports(n)), "--",
           str(mlxgp_bin), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def start_ranks(tmp_path, mlxgp_bin, args_per_rank, env=None, cwds=None):
    """Starts one process per rank by hand (as mlx.launch does), returning the Popen objects; `cwds`: each
    rank's working directory (the same relative path names another file on each "machine")."""
    port = free_ports(len(args_per_rank))
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([[f"127.0.0.1:{port + r}"] for r in range(len(args_per_rank))]))
    procs = []
    for r, args in enumerate(args_per_rank):
        e = {**os.environ, "MLX_RANK": str(r), "MLX_HOSTFILE": str(hostfile), **(env or {})}
        procs.append(subprocess.Popen([str(mlxgp_bin), *map(str, args)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=e, cwd=cwds[r] if cwds else None))
    return procs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    archs = ("llama", "qwen3", "mistral", "qwen2", "gemma", "gemma2", "gemma3_text", "phi3", "phi3-long", "granite",
             "olmo2", "smollm3", "qwen2_moe", "qwen3_moe", "mixtral", "starcoder2", "gpt2", "olmo3", "gemma3",
             "mistral3-ministral3", "olmoe", "glm4", "cohere", "cohere2", "phi",
             "glm4_moe", "stablelm", "stablelm-parallel", "seed_oss", "ernie4_5", "exaone4",
             "gpt_neox", "arcee", "nemotron", "granitemoe", "helium", "hunyuan_v1_dense", "deepseek_v2",
             "deepseek_v3", "glm4_moe_lite", "dots1", "apertus", "qwen2_5_vl", "qwen3_vl", "llama4_text",
             "llama4", "gpt_bigcode", "gpt_bigcode-mha", "olmo", "phimoe", "ernie4_5_moe", "hunyuan_v1_moe")
    return {a: tiny_models.make_tiny_model(a, tmp_path_factory.mktemp(f"dist_{a}"))[1] for a in archs}


# --- tensor parallel ------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "qwen3", "mistral", "qwen2", "gemma", "gemma2", "gemma3_text", "phi3",
                                  "phi3-long", "granite", "olmo2", "smollm3", "qwen2_moe", "qwen3_moe", "mixtral",
                                  "starcoder2", "gpt2", "olmo3", "gemma3", "mistral3-ministral3", "olmoe", "glm4",
                                  "cohere", "cohere2", "phi", "glm4_moe", "stablelm", "stablelm-parallel",
                                  "seed_oss", "ernie4_5", "exaone4", "gpt_neox", "arcee", "nemotron",
                                  "granitemoe", "helium", "hunyuan_v1_dense", "deepseek_v2", "deepseek_v3",
                                  "glm4_moe_lite", "dots1", "apertus", "qwen2_5_vl", "qwen3_vl", "llama4_text",
                                  "llama4", "gpt_bigcode", "gpt_bigcode-mha", "olmo", "phimoe", "ernie4_5_moe", "hunyuan_v1_moe"])
def test_tensor_parallel_logits_match_one_process(arch, tiny, mlxgp_bin, run_mlxgp, tmp_path):
    folder = tiny[arch]
    ids = IDS * 3 if arch == "phi3-long" else IDS  # 36 positions: the decode crosses LongRoPE's 24
    common = ["logits", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--prefill", 8]
    run_mlxgp(*common, "--out", tmp_path / "one.safetensors")
    proc = launch(mlxgp_bin, *common, "--tensor-parallel", "--out", tmp_path / "tp.safetensors")
    # mlx.launch exits 0 whatever its ranks exit with: say what rank 0 printed if it wrote nothing.
    assert (tmp_path / "tp.safetensors").exists(), f"no output; mlx.launch printed:\n{proc.stdout}\n{proc.stderr}"
    one = load_file(str(tmp_path / "one.safetensors"))["logits"]
    tp = load_file(str(tmp_path / "tp.safetensors"))["logits"]
    diff = float(np.abs(one - tp).max())
    print(f"{arch}: tensor parallel on 2 ranks vs 1 process, prefill 8 + {len(ids) - 8} cached steps: "
          f"max |logit diff| {diff:.2e}")
    assert one.shape == tp.shape and np.isfinite(tp).all()
    assert diff <= 1e-4
    assert proc.stdout == ""  # logits writes a file; neither rank prints


def _greedy(run, model, *extra):
    return run("generate", "--model", model, "--input-ids", ",".join(map(str, IDS)), "--max-new-tokens", 24,
               "--ignore-eos", "--json", *extra)


def _tokens_match_with_near_ties(a, b, scores, tol=1e-4):
    """Identical greedy tokens, or a first difference at a step whose top two scores are within tol."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            top = np.sort(scores[i])[-2:]
            return bool(top[1] - top[0] <= tol), i
    return len(a) == len(b), None


@pytest.mark.parametrize("arch", ["llama", "qwen3", "mistral"])
def test_tensor_parallel_greedy_tokens_tiny(arch, tiny, mlxgp_bin, run_mlxgp, tmp_path):
    one = json.loads(_greedy(run_mlxgp, tiny[arch], "--scores-out", tmp_path / "s.safetensors").stdout)
    proc = _greedy(lambda *a: launch(mlxgp_bin, *a), tiny[arch], "--tensor-parallel")
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout  # exactly one result, rank 0's
    tp = json.loads(lines[0])
    a, b = one["sequences"][0]["token_ids"], tp["sequences"][0]["token_ids"]
    scores = load_file(str(tmp_path / "s.safetensors"))["scores.0"]
    ok, at = _tokens_match_with_near_ties(a, b, scores)
    print(f"{arch}: greedy tokens identical {sum(x == y for x, y in zip(a, b))}/{len(a)}")
    assert ok, (at, a, b)


@pytest.mark.parametrize("dtype", ["float32", None])
def test_tensor_parallel_default_model(dtype, default_gguf, mlxgp_bin, run_mlxgp, tmp_path):
    """SmolLM2-135M: 9 query heads in 3 KV groups go 6 + 3 over 2 ranks; fp32 and the Q4_1 file as stored."""
    extra = ["--dtype", dtype] if dtype else []
    one_logits, tp_logits = tmp_path / "one.safetensors", tmp_path / "tp.safetensors"
    common = ["logits", "--model", default_gguf, "--input-ids", ",".join(map(str, IDS)), "--prefill", 8, *extra]
    run_mlxgp(*common, "--out", one_logits)
    launch(mlxgp_bin, *common, "--tensor-parallel", "--out", tp_logits)
    diff = float(np.abs(load_file(str(one_logits))["logits"] - load_file(str(tp_logits))["logits"]).max())
    one = json.loads(_greedy(run_mlxgp, default_gguf, *extra, "--scores-out", tmp_path / "s.safetensors").stdout)
    tp = json.loads(_greedy(lambda *a: launch(mlxgp_bin, *a), default_gguf, *extra, "--tensor-parallel").stdout)
    a, b = one["sequences"][0]["token_ids"], tp["sequences"][0]["token_ids"]
    ok, at = _tokens_match_with_near_ties(a, b, load_file(str(tmp_path / "s.safetensors"))["scores.0"])
    print(f"SmolLM2 {dtype or 'Q4_1'}: max |logit diff| {diff:.2e}; greedy tokens identical "
          f"{sum(x == y for x, y in zip(a, b))}/{len(a)}")
    assert diff <= 1e-4
    assert ok, (at, a, b)


def _tp_logits_diff(model, mlxgp_bin, run_mlxgp, tmp_path):
    """max |logit diff| between one process and --tensor-parallel over 2 ranks (8-token prefill, then cached)."""
    common = ["logits", "--model", model, "--input-ids", ",".join(map(str, IDS)), "--prefill", 8]
    run_mlxgp(*common, "--out", tmp_path / "one.safetensors")
    launch(mlxgp_bin, *common, "--tensor-parallel", "--out", tmp_path / "tp.safetensors")
    return float(np.abs(load_file(str(tmp_path / "one.safetensors"))["logits"] -
                        load_file(str(tmp_path / "tp.safetensors"))["logits"]).max())


@pytest.mark.parametrize("arch,mode", [("llama", "mxfp4"), ("qwen3_moe", "nvfp4")])
def test_tensor_parallel_microscaling_folders(arch, mode, tiny, hf_default, mlxgp_bin, run_mlxgp, tmp_path):
    """MLX folders in a microscaling mode (mlx_lm.convert --q-mode: uint8 scales, no biases; qwen3_moe's
    stacked experts too, its routers affine): the scales split with their groups, as affine ones do."""
    import importlib

    src = tmp_path / "hf"
    shutil.copytree(tiny[arch], src)
    tiny_models.mlx_lm_layout(src, arch)
    hf_default[1].save_pretrained(src)
    folder = tmp_path / mode
    importlib.import_module("mlx_lm.convert").convert(str(src), str(folder), quantize=True, q_mode=mode)
    diff = _tp_logits_diff(folder, mlxgp_bin, run_mlxgp, tmp_path)
    print(f"{arch} {mode} folder: tensor parallel on 2 ranks vs 1 process, max |logit diff| {diff:.2e}")
    assert diff <= 1e-4


def test_tensor_parallel_kquant_blocks(default_gguf, mlxgp_bin, run_mlxgp, tmp_path):
    """llama.cpp blocks kept as stored: SmolLM2 Q4_K_M's Q6_K ffn_down splits at 768 = 3 blocks of 256 columns.
    A tiny Q6_K llama (4 heads of 64) would split o_proj at 128 columns, inside a 256-column block: refused."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.refs import gguf_quant

    q4km = gguf_quant.cached_quantized(default_gguf, "Q4_K_M")
    diff = _tp_logits_diff(q4km, mlxgp_bin, run_mlxgp, tmp_path)
    print(f"SmolLM2 Q4_K_M as stored (Q6_K blocks split by columns): max |logit diff| {diff:.2e}")
    assert diff <= 1e-4
    kq_model, _ = tiny_models.make_tiny_model("llama-kq", tmp_path / "kq")
    q6k = tiny_models.write_tiny_gguf(kq_model, tmp_path / "tiny-Q6_K.gguf", "Q6_K", gguf_quant.quantize_rows)
    cmd = [str(LAUNCH), "-n", "2", "--backend", "ring", "--starting-port", str(free_ports(3)), "--",
           str(mlxgp_bin), "logits", "--model", str(q6k), "--input-ids", "1,2,3", "--tensor-parallel", "--out",
           str(tmp_path / "x.safetensors")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert ("[distributed] tensor parallelism over 2 ranks would split 'model.layers.0.self_attn.o_proj.weight' "
            "inside a quantization block of 256 columns; load the model with --dtype float32") in p.stderr, p.stderr
    assert not (tmp_path / "x.safetensors").exists()


def test_tensor_parallel_block_experts(mlxgp_bin, run_mlxgp, tmp_path):
    """Q6_K stacked experts kept as stored split over 2 ranks: the down projections' 768 input columns at
    block edges (512 + 256), gate/up rows alike; logits equal one process."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.refs import gguf_quant

    model, _ = tiny_models.make_tiny_model("qwen3_moe-gguf", tmp_path / "moe")
    path = tiny_models.write_tiny_gguf(model, tmp_path / "moe-q6k.gguf", "F32", gguf_quant.quantize_rows,
                                       types={"ffn_down_exps.weight": "Q6_K"})
    diff = _tp_logits_diff(path, mlxgp_bin, run_mlxgp, tmp_path)
    print(f"qwen3_moe with Q6_K experts, tensor parallel over 2 ranks: max |logit diff| {diff:.2e}")
    assert diff <= 1e-4


def test_tensor_parallel_beams_sampling_and_batches(tiny, mlxgp_bin, run_mlxgp, tmp_path):
    folder = tiny["llama"]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"input_ids": IDS[:k]}) + "\n" for k in (3, 7, 12)))
    cases = [
        ["--input-ids", ",".join(map(str, IDS)), "--num-beams", 3, "--max-new-tokens", 10],
        ["--input-ids", ",".join(map(str, IDS)), "--do-sample", "--seed", 5, "--top-k", 20,
         "--repetition-penalty", 1.3, "--max-new-tokens", 12],
        ["--prompts-file", prompts, "--max-new-tokens", 8, "--batch-size", 3],
    ]
    for extra in cases:
        args = ["generate", "--model", folder, "--ignore-eos", "--json", *extra]
        one = [json.loads(l)["sequences"] for l in run_mlxgp(*args).stdout.strip().splitlines()]
        tp = [json.loads(l)["sequences"] for l in launch(mlxgp_bin, *args, "--tensor-parallel").stdout.strip().splitlines()]
        ids = lambda rs: [[s["token_ids"] for s in r] for r in rs]
        assert ids(one) == ids(tp), extra


def test_tensor_parallel_with_lora_and_steering(tiny, mlxgp_bin, run_mlxgp, tmp_path):
    """LoRA adapters on row-split (q, v, gate) and column-split (o, down) linears, and a steering vector on the
    residual stream: the sharded model's logits are the single process's."""
    from safetensors.numpy import save_file

    folder = tiny["llama"]
    data = tmp_path / "d.jsonl"
    rng = np.random.default_rng(1)
    data.write_text("".join(json.dumps({"input_ids": rng.integers(3, 512, 12).tolist()}) + "\n" for _ in range(4)))
    # A few large-lr steps so the adapters' B matrices are far from their zero start.
    run_mlxgp("train", "--model", folder, "--data", data, "--mode", "lora", "--steps", 4, "--batch-size", 2,
              "--seq-len", 16, "--lr", 0.05, "--lora-targets", "q_proj,v_proj,o_proj,gate_proj,down_proj", "--out",
              tmp_path / "lora")
    save_file({"steering_vector": rng.normal(0, 0.5, 64).astype(np.float32)}, str(tmp_path / "v.safetensors"))
    base = ["logits", "--model", folder, "--input-ids", ",".join(map(str, IDS)), "--prefill", 8]
    common = base + ["--lora", tmp_path / "lora" / "adapters.safetensors", "--steer", tmp_path / "v.safetensors",
                     "--steer-layer", 1]
    run_mlxgp(*common, "--out", tmp_path / "one.safetensors")
    run_mlxgp(*base, "--out", tmp_path / "plain.safetensors")
    launch(mlxgp_bin, *common, "--tensor-parallel", "--out", tmp_path / "tp.safetensors")
    one = load_file(str(tmp_path / "one.safetensors"))["logits"]
    tp = load_file(str(tmp_path / "tp.safetensors"))["logits"]
    plain = load_file(str(tmp_path / "plain.safetensors"))["logits"]
    diff = float(np.abs(one - tp).max())
    print(f"LoRA on 5 projections + steering, 2 ranks vs 1: max |logit diff| {diff:.2e} "
          f"(the adapters and vector move the logits by {float(np.abs(one - plain).max()):.2f})")
    assert float(np.abs(one - plain).max()) > 0.1  # the adapters and the vector matter
    assert diff <= 1e-4


def test_tensor_parallel_refusals(tiny, mlxgp_bin, run_mlxgp, tmp_path):
    # Fewer KV heads than ranks: refused on every rank with one line.
    cmd = [str(LAUNCH), "-n", "3", "--backend", "ring", "--starting-port", str(free_ports(3)), "--",
           str(mlxgp_bin), "generate", "--model", str(tiny["llama"]), "--input-ids", "1,2,3", "--max-new-tokens", "2",
           "--tensor-parallel"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert "exited with code" in p.stderr  # mlx.launch itself exits 0
    assert "[distributed] tensor parallelism over 3 ranks needs at least 3 key/value heads; the model has 2" in p.stderr
    # Without a launcher: one process, with a notice, and the same result.
    p = run_mlxgp("generate", "--model", tiny["llama"], "--input-ids", "1,2,3", "--max-new-tokens", 4,
                  "--tensor-parallel", "--json")
    assert "[distributed] --tensor-parallel without a launcher" in p.stderr
    q = run_mlxgp("generate", "--model", tiny["llama"], "--input-ids", "1,2,3", "--max-new-tokens", 4, "--json")
    assert json.loads(p.stdout)["sequences"] == json.loads(q.stdout)["sequences"]
    (tmp_path / "c").write_text("")
    p = run_mlxgp("generate", "--model", tiny["llama"], "--input-ids", "1,2,3", "--tensor-parallel", "--prompt-cache",
                  tmp_path / "c", check=False)
    assert p.returncode == 2 and "--prompt-cache cannot be combined with --tensor-parallel" in p.stderr


@pytest.mark.parametrize("arch", ["gpt_oss", "gemma4_text", "lfm2", "lfm2_moe", "qwen3_next"])
def test_tensor_parallel_refused(arch, mlxgp_bin, tmp_path):
    """gpt_oss's per-head sinks and expert biases have no split yet, nor gemma4_text's layers of different widths, nor
    lfm2's short convolutions, nor qwen3_next's gated delta nets: every rank says so in one line."""
    _, folder = tiny_models.make_tiny_model(arch, tmp_path / arch)
    cmd = [str(LAUNCH), "-n", "2", "--backend", "ring", "--starting-port", str(free_ports(2)), "--",
           str(mlxgp_bin), "generate", "--model", str(folder), "--input-ids", "1,2,3", "--max-new-tokens", "2",
           "--tensor-parallel"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert "exited with code" in p.stderr  # mlx.launch itself exits 0
    assert f"[distributed] tensor-parallel generation of {arch} is not supported" in p.stderr + p.stdout


# --- failures ---------------------------------------------------------------------------------------


def _survivor_of(tiny, mlxgp_bin, tmp_path, sig, settle, env=None):
    """Two ranks decoding far past the context (a rotating cache), then `sig` to rank 1: rank 0's exit code,
    stderr and seconds to exit."""
    args = ["generate", "--model", tiny["llama"], "--input-ids", "1,2,3", "--max-new-tokens", 1000000,
            "--max-kv-size", 64, "--ignore-eos", "--tensor-parallel", "--json"]
    ranks = start_ranks(tmp_path, mlxgp_bin, [args, args], env=env)
    try:
        time.sleep(settle)  # both ranks connected and decoding
        assert ranks[0].poll() is None and ranks[1].poll() is None, ranks[0].stderr.read()
        ranks[1].send_signal(sig)
        t0 = time.time()
        _, err = ranks[0].communicate(timeout=30)
        took = time.time() - t0
    finally:
        for p in ranks:
            if p.poll() is None:
                p.kill()
                p.wait()
    return ranks[0].returncode, err, took


def test_killed_rank_gives_a_clear_error_within_30s(tiny, mlxgp_bin, tmp_path):
    code, err, took = _survivor_of(tiny, mlxgp_bin, tmp_path, signal.SIGKILL, settle=4)
    print(f"survivor exited {code} after {took:.1f} s: {err.strip()}")
    assert code == 1
    # MLX's ring backend logs the failed socket operations before it gives up; mlxgp's line comes last.
    assert err.strip().splitlines()[-1].startswith("[distributed] lost another rank"), err


def test_a_frozen_rank_gives_a_clear_error_in_bounded_time(tiny, mlxgp_bin, tmp_path):
    """A rank stopped with SIGSTOP keeps its sockets open: the survivor hears no heartbeat from it and stops
    after MLXGP_DISTRIBUTED_TIMEOUT instead of waiting for ever."""
    code, err, took = _survivor_of(tiny, mlxgp_bin, tmp_path, signal.SIGSTOP, settle=5,
                                   env={"MLXGP_DISTRIBUTED_TIMEOUT": "3"})
    print(f"survivor of a frozen rank exited {code} after {took:.1f} s: {err.strip()}")
    assert code == 1 and took < 15
    assert err.strip().splitlines()[-1].startswith("[distributed] lost another rank"), err
    assert "no sign of life from it for 3 s (MLXGP_DISTRIBUTED_TIMEOUT)" in err


def test_a_rank_that_never_starts_times_out(tiny, mlxgp_bin, tmp_path):
    args = ["generate", "--model", tiny["llama"], "--input-ids", "1,2,3", "--tensor-parallel"]
    port = free_ports(2)
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([[f"127.0.0.1:{port}"], [f"127.0.0.1:{port + 1}"]]))
    t0 = time.time()
    p = subprocess.run([str(mlxgp_bin), *map(str, args)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MLX_RANK": "0", "MLX_HOSTFILE": str(hostfile),
                            "MLXGP_DISTRIBUTED_TIMEOUT": "3"})
    took = time.time() - t0
    print(f"exited {p.returncode} after {took:.1f} s: {p.stderr.strip()}")
    assert p.returncode == 1 and took < 30
    assert p.stderr.strip() == ("[distributed] rank 0 could not connect to every rank within 3 s "
                                "(MLXGP_DISTRIBUTED_TIMEOUT): is every rank started, and does the hostfile list "
                                "addresses the ranks can reach?")


def test_mismatched_settings_are_found_at_start(tiny, mlxgp_bin, tmp_path):
    base = ["generate", "--model", tiny["llama"], "--input-ids", "1,2,3", "--tensor-parallel"]
    cases = [(base + ["--max-new-tokens", 4], base + ["--max-new-tokens", 5]),
             (base, ["generate", "--model", tiny["qwen3"], "--input-ids", "1,2,3", "--tensor-parallel"])]
    for a, b in cases:
        ranks = start_ranks(tmp_path, mlxgp_bin, [a, b])
        outs = [p.communicate(timeout=120) for p in ranks]
        for p, (out, err) in zip(ranks, outs):
            assert p.returncode != 0 and out == "", err
            assert err.strip().splitlines()[-1].startswith("[distributed] the model, options or inputs differ "
                                                           "between rank 0 and rank 1"), err


def _chosen_logit_diff(run_mlxgp, model, prompt, sequences, tmp_path, log_softmax=False):
    """Max |difference| between each step's reported logit (log-probability with log_softmax) of the chosen
    token and the one-process model's on the prompt and the tokens before it. Ranks that sampled different
    tokens sum partial results of different histories, far from it."""
    worst = 0.0
    for i, (tokens, reported) in enumerate(sequences):
        out = tmp_path / f"ref{i}.safetensors"
        run_mlxgp("logits", "--model", model, "--input-ids", ",".join(map(str, prompt + tokens[:-1])), "--out", out)
        ref = load_file(str(out))["logits"].astype(np.float64)[len(prompt) - 1:]
        if log_softmax:
            ref = ref - ref.max(1, keepdims=True)
            ref = ref - np.log(np.exp(ref).sum(1, keepdims=True))
        worst = max(worst, float(np.abs(ref[np.arange(len(tokens)), tokens] - np.array(reported)).max()))
    return worst


def test_unseeded_sampling_agrees_across_ranks(tiny, mlxgp_bin, run_mlxgp, tmp_path):
    """Without --seed every rank used to draw its own seed and sample its own tokens; the all-sums then mixed
    the ranks' histories. The ranks now agree on rank 0's seed: one prompt (2 sequences) and a prompts file."""
    folder = tiny["llama"]
    sample = ["--do-sample", "--temperature", 2.0, "--top-k", 0, "--max-new-tokens", 10, "--ignore-eos",
              "--output-logits", "--json", "--tensor-parallel"]
    r = json.loads(launch(mlxgp_bin, "generate", "--model", folder, "--input-ids", ",".join(map(str, IDS)),
                          "--num-return-sequences", 2, *sample).stdout)
    seqs = [(s["token_ids"], s["logits"]) for s in r["sequences"]]
    assert seqs[0][0] != seqs[1][0]  # sampled, not one stream twice
    diff = _chosen_logit_diff(run_mlxgp, folder, IDS, seqs, tmp_path)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"input_ids": IDS[:k]}) + "\n" for k in (5, 5, 9)))
    rows = [json.loads(l) for l in launch(mlxgp_bin, "generate", "--model", folder, "--prompts-file", prompts,
                                          *sample).stdout.strip().splitlines()]
    assert rows[0]["sequences"][0]["token_ids"] != rows[1]["sequences"][0]["token_ids"]  # a seed per row
    batch_diff = max(_chosen_logit_diff(run_mlxgp, folder, row["prompt_token_ids"],
                                        [(s["token_ids"], s["logits"]) for s in row["sequences"]], tmp_path)
                     for row in rows)
    print(f"unseeded sampling on 2 ranks: chosen-token logits vs one process max |diff| {diff:.2e}, "
          f"prompts file {batch_diff:.2e}")
    assert diff <= 1e-4 and batch_diff <= 1e-4


def test_unseeded_sampling_agrees_across_ranks_in_the_server(tiny, mlxgp_bin, run_mlxgp, tmp_path):
    """The server's other ranks rebuild each request from its body: an unseeded one gets rank 0's seed too."""
    folder = tiny["llama"]
    tp, port, log = _serve(["timeout", "300", str(LAUNCH), "-n", "2", "--backend", "ring", "--starting-port",
                            str(free_ports(3)), "--", str(mlxgp_bin), "serve", "--model", str(folder), "--port", "0",
                            "--tensor-parallel"])
    try:
        seqs = []
        for _ in range(2):
            # Temperature 1 and no truncation: the logprobs are the raw logits' log-softmax.
            o = json.loads(_post(port, "/v1/completions", {"prompt": IDS, "max_tokens": 10, "temperature": 1.0,
                                                           "top_k": -1, "logprobs": 0}))
            lp = o["choices"][0]["logprobs"]
            seqs.append(([int(t.split(":")[1]) for t in lp["tokens"]], lp["token_logprobs"]))
        assert tp.poll() is None, "".join(log)
    finally:
        os.killpg(tp.pid, signal.SIGTERM)
        tp.wait(timeout=60)
    diff = _chosen_logit_diff(run_mlxgp, folder, IDS, seqs, tmp_path, log_softmax=True)
    print(f"unseeded sampling in a 2-rank server: logprobs vs one process max |diff| {diff:.2e}")
    assert diff <= 1e-4


def _expect_refused_at_start(ranks, what="[distributed] the model, options or inputs differ between rank 0 and rank 1"):
    outs = [p.communicate(timeout=120) for p in ranks]
    for p, (out, err) in zip(ranks, outs):
        assert p.returncode != 0 and out == "", err
        assert err.strip().splitlines()[-1].startswith(what), err


def test_same_run_check_compares_what_takes_effect(tiny, mlxgp_bin, tmp_path):
    """The start-up check compares file contents and the model folder's generation_config.json, not paths:
    the same relative path with other contents is refused, identical files at other paths are not."""
    from safetensors.numpy import save_file

    folder = tiny["llama"]
    d0, d1 = tmp_path / "r0", tmp_path / "r1"
    for d, temperature, scale in ((d0, 0.7, 1.0), (d1, 0.9, -1.0)):
        d.mkdir()
        (d / "gen.json").write_text(json.dumps({"temperature": temperature}))
        save_file({"steering_vector": np.full(64, 0.1 * scale, np.float32)}, str(d / "v.safetensors"))
    base = ["generate", "--model", folder, "--input-ids", "1,2,3", "--max-new-tokens", 2, "--tensor-parallel"]
    # --config: same path, other contents.
    _expect_refused_at_start(start_ranks(tmp_path, mlxgp_bin, [base + ["--config", "gen.json"]] * 2, cwds=[d0, d1]))
    # --steer: same path, other contents.
    steer = base + ["--steer", "v.safetensors", "--steer-layer", 1]
    _expect_refused_at_start(start_ranks(tmp_path, mlxgp_bin, [steer] * 2, cwds=[d0, d1]))
    # Another generation_config.json in rank 1's copy of the model.
    other = tmp_path / "other_model"
    shutil.copytree(folder, other)
    (other / "generation_config.json").write_text(json.dumps({"do_sample": True, "temperature": 1.5}))
    other_args = ["generate", "--model", other, *base[3:]]
    _expect_refused_at_start(start_ranks(tmp_path, mlxgp_bin, [base, other_args]))
    # Identical files at different paths (and a byte-identical model folder) run.
    (d1 / "same.json").write_text((d0 / "gen.json").read_text())
    ranks = start_ranks(tmp_path, mlxgp_bin, [base + ["--config", d0 / "gen.json", "--json"],
                                              base + ["--config", d1 / "same.json", "--json"]])
    outs = [p.communicate(timeout=120) for p in ranks]
    assert [p.returncode for p in ranks] == [0, 0], outs
    assert json.loads(outs[0][0])["sequences"][0]["token_ids"]


def test_weights_check_is_exact(tiny, mlxgp_bin, tmp_path):
    """A model whose rank-1 copy differs in one sign, or by a tiny nudge of one projection, is refused (a sum of
    |w| missed both)."""
    from safetensors.numpy import save_file

    folder = tiny["llama"]
    base = ["generate", "--model", folder, "--input-ids", "1,2,3", "--max-new-tokens", 2, "--tensor-parallel"]
    for name, change in (("model.layers.0.self_attn.o_proj.weight", lambda w: -w),
                         ("model.layers.1.self_attn.v_proj.weight", lambda w: w + np.float32(1e-6) * w[::-1])):
        other = tmp_path / f"m_{name}"
        shutil.copytree(folder, other)
        files = list(other.glob("*.safetensors"))
        for f in files:
            tensors = load_file(str(f))
            if name in tensors:
                tensors[name] = change(tensors[name]).astype(tensors[name].dtype)
                save_file(tensors, str(f), metadata={"format": "pt"})
        _expect_refused_at_start(start_ranks(tmp_path, mlxgp_bin, [base, ["generate", "--model", other, *base[3:]]]),
                                 "[distributed] the model, options or inputs differ between rank 0 and rank 1 "
                                 "(the weights differ)")


def test_self_speculation_under_tensor_parallel(tiny, mlxgp_bin, run_mlxgp):
    """--draft-layers: the draft is the sharded model's first layers, sharded alike; greedy tokens as one process."""
    args = ["generate", "--model", tiny["llama"], "--input-ids", ",".join(map(str, IDS)), "--max-new-tokens", 12,
            "--ignore-eos", "--use-speculative", "--draft-layers", 1, "--json"]
    one = json.loads(run_mlxgp(*args).stdout)
    tp = json.loads(launch(mlxgp_bin, *args, "--tensor-parallel").stdout)
    assert tp["sequences"][0]["token_ids"] == one["sequences"][0]["token_ids"]
    assert tp["stats"]["speculative"]["drafted_tokens"] > 0


def test_max_time_refused_under_tensor_parallel(tiny, mlxgp_bin):
    """Each rank would stop on its own clock (the other then waits for ever or loses its peer): refused."""
    cmd = [str(LAUNCH), "-n", "2", "--backend", "ring", "--starting-port", str(free_ports(2)), "--", str(mlxgp_bin),
           "generate", "--model", str(tiny["llama"]), "--input-ids", "1,2,3", "--max-new-tokens", "4", "--max-time",
           "5", "--tensor-parallel"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert ("[generate] max_time cannot be used on a tensor-parallel (sharded) model: each rank would stop on its own "
            "clock") in p.stderr, p.stderr


def test_a_launch_of_one_rank_runs_as_one_process(tiny, mlxgp_bin, run_mlxgp):
    """`mlx.launch -n 1` writes an empty hostfile: a group of one, as without a launcher."""
    args = ["generate", "--model", tiny["llama"], "--input-ids", "1,2,3", "--max-new-tokens", 4, "--json"]
    one = json.loads(run_mlxgp(*args).stdout)
    p = launch(mlxgp_bin, *args, "--tensor-parallel", n=1, timeout=120)
    assert "exited with code" not in p.stderr, p.stderr
    assert json.loads(p.stdout)["sequences"] == one["sequences"]


# --- data parallel ----------------------------------------------------------------------------------

T = 16


def _dataset(path, vocab, n=16, seed=3):
    rng = np.random.default_rng(seed)
    # Examples of different lengths, so the two ranks' batches pad differently from the single batch.
    rows = [rng.integers(3, vocab, int(rng.integers(6, T + 1))).tolist() for _ in range(n)]
    path.write_text("".join(json.dumps({"input_ids": r}) + "\n" for r in rows))
    return path


def _train_args(model, data, out, mode, steps, batch, *extra):
    return ["train", "--model", model, "--data", data, "--mode", mode, "--steps", steps, "--batch-size", batch,
            "--seq-len", T, "--dtype", "float32", "--out", out, "--log-json", Path(out).with_suffix(".jsonl"),
            *map(str, extra)]


def _losses(out):
    return [json.loads(l)["loss"] for l in Path(out).with_suffix(".jsonl").read_text().splitlines()]


def _compare_runs(one_out, dp_out, artefact):
    la, lb = _losses(one_out), _losses(dp_out)
    rel = max(abs(a - b) / abs(a) for a, b in zip(la, lb))
    wa, wb = load_file(str(Path(one_out) / artefact)), load_file(str(Path(dp_out) / artefact))
    assert wa.keys() == wb.keys()
    wdiff = max(float(np.abs(wa[k] - wb[k]).max()) for k in wa)
    return la, lb, rel, wdiff


@pytest.mark.parametrize("mode,optimizer,accum", [("full", "sgd", 1), ("full", "adamw", 1), ("lora", "adamw", 2),
                                                  ("soft-prompt", "adamw", 1)])
def test_data_parallel_equals_one_process_tiny(mode, optimizer, accum, tiny, mlxgp_bin, run_mlxgp, tmp_path):
    folder = tiny["llama"]
    data = _dataset(tmp_path / "d.jsonl", 512)
    lr = 0.05 if optimizer == "sgd" else 1e-4
    extra = ["--optimizer", optimizer, "--lr", lr, "--seed", 1, "--grad-accum", accum]
    if mode == "lora":  # refused by the other modes, which train no adapters
        extra += ["--lora-targets", "q_proj,v_proj,down_proj"]
    run_mlxgp(*_train_args(folder, data, tmp_path / "one", mode, 6, 4, *extra))
    proc = launch(mlxgp_bin, *_train_args(folder, data, tmp_path / "dp", mode, 6, 4, *extra, "--distributed"))
    artefact = {"full": "model.safetensors", "lora": "adapters.safetensors", "soft-prompt": "soft_prompt.safetensors"}
    la, lb, rel, wdiff = _compare_runs(tmp_path / "one", tmp_path / "dp", artefact[mode])
    print(f"tiny llama {mode}/{optimizer}, grad-accum {accum}: 2 ranks x 2 vs 1 x 4, 6 steps: loss max rel diff {rel:.2e} "
          f"({la[0]:.4f} -> {la[-1]:.4f}); final weights max |diff| {wdiff:.2e}")
    assert len(lb) == 6 and rel <= 1e-5 and wdiff <= 1e-6
    # Rank 0 alone printed progress and wrote the checkpoint.
    assert proc.stderr.count("[train] step 6/6") == 1
    assert json.loads((tmp_path / "dp" / "checkpoint-6" / "meta.json").read_text())["world_size"] == 2


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_data_parallel_equals_one_process_smollm2(mode, default_gguf, mlxgp_bin, run_mlxgp, tmp_path):
    data = _dataset(tmp_path / "d.jsonl", 49152, n=8)
    # lr 1e-3: the update is lr x gradient, and the two runs' gradients differ by fp32 summation order
    # (the 49152 x 576 tied embedding sums many tokens' contributions); at lr 1e-2 that was 3.7e-6.
    extra = ["--optimizer", "sgd", "--lr", 1e-3, "--seed", 1]
    run_mlxgp(*_train_args(default_gguf, data, tmp_path / "one", mode, 2, 4, *extra))
    launch(mlxgp_bin, *_train_args(default_gguf, data, tmp_path / "dp", mode, 2, 4, *extra, "--distributed"))
    artefact = "model.safetensors" if mode == "full" else "adapters.safetensors"
    la, lb, rel, wdiff = _compare_runs(tmp_path / "one", tmp_path / "dp", artefact)
    print(f"SmolLM2 fp32 {mode}: 2 ranks x 2 vs 1 x 4, 2 SGD steps (lr 1e-3): loss max rel diff {rel:.2e}; "
          f"final weights max |diff| {wdiff:.2e}")
    assert rel <= 1e-5 and wdiff <= 1e-6


def test_data_parallel_resume_and_world_size(tiny, mlxgp_bin, run_mlxgp, tmp_path):
    folder = tiny["llama"]
    data = _dataset(tmp_path / "d.jsonl", 512)
    common = ["--optimizer", "adamw", "--lr", 1e-3, "--distributed"]
    launch(mlxgp_bin, *_train_args(folder, data, tmp_path / "full", "full", 6, 4, *common))
    launch(mlxgp_bin, *_train_args(folder, data, tmp_path / "half", "full", 6, 4, *common, "--save-every", 3))
    shutil.copytree(tmp_path / "half" / "checkpoint-3", tmp_path / "resumed" / "checkpoint-3")
    (tmp_path / "resumed" / "latest").write_text("checkpoint-3\n")
    launch(mlxgp_bin, *_train_args(folder, data, tmp_path / "resumed", "full", 6, 4, *common, "--resume",
                                   tmp_path / "resumed"))
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert all(np.array_equal(a[k], b[k]) for k in a), "the resumed 2-rank run differs from the uninterrupted one"
    # The same checkpoint resumed by one process: said in one line, and training goes on.
    shutil.copytree(tmp_path / "half" / "checkpoint-3", tmp_path / "single" / "checkpoint-3")
    (tmp_path / "single" / "latest").write_text("checkpoint-3\n")
    p = run_mlxgp(*_train_args(folder, data, tmp_path / "single", "full", 6, 4, "--optimizer", "adamw", "--lr", 1e-3,
                               "--resume", tmp_path / "single"))
    assert "[train] the checkpoint was written by a run on 2 rank(s) and this run has 1" in p.stderr
    c = load_file(str(tmp_path / "single" / "model.safetensors"))
    assert max(float(np.abs(a[k] - c[k]).max()) for k in a) <= 1e-5


def test_data_parallel_batch_must_split(tiny, mlxgp_bin, tmp_path):
    data = _dataset(tmp_path / "d.jsonl", 512)
    cmd = [str(LAUNCH), "-n", "2", "--backend", "ring", "--starting-port", str(free_ports(3)), "--",
           str(mlxgp_bin), *map(str, _train_args(tiny["llama"], data, tmp_path / "o", "full", 2, 3, "--distributed"))]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert "exited with code" in p.stderr  # mlx.launch itself exits 0
    assert "[cli] --batch-size 3 must be a multiple of the number of ranks (2)" in p.stderr


# --- serve ----------------------------------------------------------------------------------------------


def _serve(cmd):
    """Starts a server command; returns (process, port) once it prints its address."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    log, deadline = [], time.time() + 120
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        log.append(line)
        if line.startswith("[serve] model"):
            import threading
            threading.Thread(target=lambda: [log.append(l) for l in proc.stderr], daemon=True).start()
            return proc, int(line.rsplit(":", 1)[1]), log
    proc.kill()
    raise AssertionError("server did not start:\n" + "".join(log))


def _post(port, path, body, timeout=300):
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read().decode()


def test_tensor_parallel_server_answers_as_one_process(default_gguf, mlxgp_bin, tmp_path):
    """`mlx.launch -n 2 ... mlxgp serve --tensor-parallel`: rank 0 serves HTTP, rank 1 follows its steps.
    Concurrent requests (greedy, seeded sampling with n = 2, streamed chat, logprobs), one abandoned stream and
    one refused request give what a single-process server gives."""
    import concurrent.futures as cf
    import http.client

    args = ["serve", "--model", default_gguf, "--dtype", "float32", "--port", 0]
    one, one_port, _ = _serve([str(mlxgp_bin), *map(str, args)])
    tp, tp_port, tp_log = _serve([str(LAUNCH), "-n", "2", "--backend", "ring", "--starting-port",
                                  str(free_ports(3)), "--", str(mlxgp_bin), *map(str, args), "--tensor-parallel"])
    bodies = [
        ("/v1/completions", {"prompt": "The harbour at dawn", "max_tokens": 16, "temperature": 0}),
        ("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 12, "temperature": 1.0, "seed": 5, "n": 2}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 12,
                                  "temperature": 0.7, "seed": 3, "stream": True}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8,
                                  "temperature": 0, "logprobs": True, "top_logprobs": 2}),
    ]

    def texts(port):
        # An abandoned stream first: the client reads one event and hangs up (a cancellation).
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/v1/completions", json.dumps({"prompt": "Tell me", "max_tokens": 200, "stream": True}),
                     {"Content-Type": "application/json"})
        conn.getresponse().readline()
        conn.close()
        with cf.ThreadPoolExecutor(4) as ex:
            outs = list(ex.map(lambda pb: _post(port, *pb), bodies))
        result = []
        for (path, body), out in zip(bodies, outs):
            if body.get("stream"):
                events = [json.loads(l[6:]) for l in out.splitlines() if l.startswith("data: {")]
                result.append("".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]))
            else:
                o = json.loads(out)
                result.append([c.get("text", c.get("message", {}).get("content")) for c in o["choices"]])
                if "logprobs" in body:
                    result.append([[t["logprob"] for t in c["logprobs"]["content"]] for c in o["choices"]])
        try:  # a refused request is refused the same way and leaves both ranks in step
            _post(port, "/v1/completions", {"prompt": "x", "max_tokens": 4, "num_beams": 2})
        except Exception as err:  # noqa: BLE001 - urllib's HTTPError carries the status
            result.append(getattr(err, "code", str(err)))
        return result

    try:
        a, b = texts(one_port), texts(tp_port)
        assert tp.poll() is None, "".join(tp_log)
    finally:
        for p in (one, tp):
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=60)
    la, lb = a.pop(4), b.pop(4)  # logprobs: equal within float noise
    print(f"serve: {len(bodies)} concurrent requests, texts identical: {a == b}; logprobs max |diff| "
          f"{max(abs(x - y) for ra, rb in zip(la, lb) for x, y in zip(ra, rb)):.2e}")
    assert a == b
    assert max(abs(x - y) for ra, rb in zip(la, lb) for x, y in zip(ra, rb)) <= 1e-4
