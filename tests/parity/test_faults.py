"""Fault tests (#20): a process killed with SIGKILL at any moment of a write, or stopped by a full disk,
leaves the previous file or checkpoint intact and loadable and nothing half-written under the real name;
the next run cleans up and, for training, `--resume` continues bit-identically to an uninterrupted run.

Two kinds of kill: at a chosen point between the steps of an atomic write (MLXGP_FAULT_KILL_AT, see
src/core/fault.h: data complete under the temporary name, renamed, pointer updated), and `kill -9` from
outside at the moment the temporary file appears (mid-write, wherever the writer happens to be).
A full disk is RLIMIT_FSIZE with SIGXFSZ ignored, so writes fail with EFBIG as on a full filesystem.
Also: a long generation with a rotating KV cache keeps resident memory flat (scripts/soak_rss.py;
`make soak` runs it for 100,000 tokens)."""
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import tiny_models

ROOT = Path(__file__).resolve().parents[2]
KILLED = -signal.SIGKILL
PREFIX = "The lighthouse keeper climbed the stairs"


def _limit_file_size(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _mlxgp(mlxgp_bin, *args, kill_at=None, max_file_bytes=None, timeout=600):
    env = dict(os.environ)
    env.pop("MLXGP_FAULT_KILL_AT", None)
    if kill_at:
        env["MLXGP_FAULT_KILL_AT"] = kill_at
    return subprocess.run([str(mlxgp_bin), *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout,
                          preexec_fn=_limit_file_size(max_file_bytes) if max_file_bytes else None)


def _ok(proc):
    assert proc.returncode == 0, proc.stderr
    return proc


def _one_line_error(proc, component, progress=None):
    """The error: one line naming its component (after the command's own progress lines, if any)."""
    assert proc.returncode not in (0, KILLED), f"exit {proc.returncode}: {proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    if progress:
        lines = [line for line in lines if not line.startswith(progress)]
    assert len(lines) == 1 and lines[0].startswith(f"[{component}]"), proc.stderr
    return lines[0]


def _leftovers(folder):
    return sorted(p.name for p in Path(folder).rglob("*") if ".tmp" in p.name or ".part" in p.name)


def _kill_when_appears(cmd, watched, timeout=300):
    """Starts cmd, sends SIGKILL the moment `watched` exists (polling every 0.5 ms); returns the exit code
    (0 when the process finished first)."""
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if watched():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.0005)
    return proc.wait(timeout=timeout)


# ---------------------------------------------------------------------------------------------------
# cache-prompt --out


def _continue(mlxgp_bin, gguf, cache):
    return _ok(_mlxgp(mlxgp_bin, "generate", "--model", gguf, "--prompt", PREFIX + " to light the lamp",
                      "--prompt-cache", cache, "--max-new-tokens", 6)).stdout


def test_cache_prompt_killed_before_the_rename_keeps_the_previous_cache(mlxgp_bin, default_gguf, tmp_path):
    out = tmp_path / "prefix.safetensors"
    _ok(_mlxgp(mlxgp_bin, "cache-prompt", "--model", default_gguf, "--prompt", PREFIX, "--out", out))
    before, text = out.read_bytes(), _continue(mlxgp_bin, default_gguf, out)
    killed = _mlxgp(mlxgp_bin, "cache-prompt", "--model", default_gguf, "--prompt", PREFIX + " again", "--out", out,
                    kill_at="safetensors-written")
    assert killed.returncode == KILLED
    assert _leftovers(tmp_path), "the kill should have left the complete temporary file"
    assert out.read_bytes() == before
    assert _continue(mlxgp_bin, default_gguf, out) == text
    # The next save replaces the leftover and renames it into place.
    _ok(_mlxgp(mlxgp_bin, "cache-prompt", "--model", default_gguf, "--prompt", PREFIX, "--out", out))
    assert _leftovers(tmp_path) == []
    assert _continue(mlxgp_bin, default_gguf, out) == text


def test_cache_prompt_killed_mid_write_leaves_old_or_new_never_half(mlxgp_bin, default_gguf, tmp_path):
    out = tmp_path / "prefix.safetensors"
    _ok(_mlxgp(mlxgp_bin, "cache-prompt", "--model", default_gguf, "--prompt", PREFIX, "--out", out))
    old = out.read_bytes()
    longer = PREFIX + " " + " ".join(["one more step"] * 60)  # a bigger file: a longer write to land in
    tmp = Path(str(out) + ".tmp.safetensors")
    codes = []
    for _ in range(3):
        codes.append(_kill_when_appears([mlxgp_bin, "cache-prompt", "--model", default_gguf, "--prompt", longer,
                                         "--out", out], tmp.exists))
        data = out.read_bytes()
        if data != old:  # the process won the race: then the new file is complete
            _continue(mlxgp_bin, default_gguf, out)
            old = data
        assert _continue(mlxgp_bin, default_gguf, out)
    assert KILLED in codes, f"no run was killed mid-write (exit codes {codes})"


def test_cache_prompt_on_a_full_disk_fails_in_one_line_and_keeps_the_previous_cache(mlxgp_bin, default_gguf,
                                                                                     tmp_path):
    out = tmp_path / "prefix.safetensors"
    _ok(_mlxgp(mlxgp_bin, "cache-prompt", "--model", default_gguf, "--prompt", PREFIX, "--out", out))
    before = out.read_bytes()
    proc = _mlxgp(mlxgp_bin, "cache-prompt", "--model", default_gguf, "--prompt", PREFIX + " and a longer prefix",
                  "--out", out, max_file_bytes=64 * 1024)
    assert "cannot write" in _one_line_error(proc, "prompt-cache")
    assert out.read_bytes() == before
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------------
# training checkpoints and final weights


STEPS, EVERY = 8, 2


@pytest.fixture(scope="module")
def tiny_training(tmp_path_factory, mlxgp_bin):
    """(model folder, data file, uninterrupted run's final weights)."""
    base = tmp_path_factory.mktemp("faults_train")
    model, folder = tiny_models.make_tiny_model("llama", base / "model")
    rng = np.random.default_rng(0)
    data = base / "data.jsonl"
    data.write_text("".join(json.dumps({"input_ids": rng.integers(3, model.config.vocab_size, 16).tolist()}) + "\n"
                            for _ in range(6)))
    full = base / "full"
    _ok(_mlxgp(mlxgp_bin, *_train_args(folder, data, full)))
    return folder, data, load_file(str(full / "model.safetensors"))


def _train_args(folder, data, out, *extra):
    return ["train", "--model", folder, "--data", data, "--mode", "full", "--batch-size", 2, "--seq-len", 16,
            "--no-shuffle", "--lr", 1e-3, "--schedule", "cosine", "--warmup", 2, "--steps", STEPS,
            "--save-every", EVERY, "--out", out, *extra]


def _resume_and_compare(mlxgp_bin, folder, data, out, reference):
    proc = _ok(_mlxgp(mlxgp_bin, *_train_args(folder, data, out, "--resume", out)))
    assert _leftovers(out) == [], proc.stderr
    got = load_file(str(out / "model.safetensors"))
    assert got.keys() == reference.keys()
    assert all(np.array_equal(got[k], reference[k]) for k in got), "resumed run differs from the uninterrupted one"
    return proc.stderr


def _latest(out):
    return (out / "latest").read_text().strip()


# Checkpoints are written at steps 2, 4, 6; then the final weights (the 4th safetensors write), then
# checkpoint-8 (the 5th). Each case: where the kill lands, and the checkpoint `latest` must name after it.
KILL_POINTS = [
    ("checkpoint-written:2", "checkpoint-2"),      # checkpoint-4 complete in its temporary folder
    ("checkpoint-renamed:3", "checkpoint-4"),      # checkpoint-6 in place, latest not yet moved
    ("text-written:4", "checkpoint-2"),            # checkpoint-4's latest.tmp written, not renamed
    ("safetensors-written:4", "checkpoint-6"),     # final weights complete, not renamed
    ("checkpoint-renamed:4", "checkpoint-6"),      # final weights and checkpoint-8 in place, latest behind
]


@pytest.mark.parametrize("kill_at,latest", KILL_POINTS)
def test_training_killed_mid_save_resumes_bit_identically(mlxgp_bin, tiny_training, tmp_path, kill_at, latest):
    folder, data, reference = tiny_training
    out = tmp_path / "run"
    assert _mlxgp(mlxgp_bin, *_train_args(folder, data, out), kill_at=kill_at).returncode == KILLED
    assert _latest(out) == latest
    assert (out / latest / "meta.json").is_file() and (out / latest / "trainer_state.safetensors").is_file()
    before = {p.name for p in out.iterdir()}
    err = _resume_and_compare(mlxgp_bin, folder, data, out, reference)
    assert f"resumed from {out / latest}" in err
    assert _latest(out) == f"checkpoint-{STEPS}"
    assert not any(".tmp" in n for n in {p.name for p in out.iterdir()}), before


def test_training_killed_at_the_moment_a_checkpoint_appears(mlxgp_bin, tiny_training, tmp_path):
    """kill -9 from outside as soon as the temporary folder of checkpoint 2, then 4, then 6 shows up (each
    run resuming from what the last one left); then resume to the end. Wherever in the write the kill
    landed, latest names a complete checkpoint and the final weights are exact."""
    folder, data, reference = tiny_training
    out = tmp_path / "run"
    codes = []
    for step in (2, 4, 6):
        args = _train_args(folder, data, out, *(["--resume", out] if (out / "latest").exists() else []))

        def temporary_appeared(prefix=f".tmp-checkpoint-{step}-"):
            return out.exists() and any(n.startswith(prefix) for n in os.listdir(out))

        codes.append(_kill_when_appears([mlxgp_bin, *args], temporary_appeared))
        if (out / "latest").exists():
            ck = out / _latest(out)
            assert (ck / "meta.json").is_file() and (ck / "trainer_state.safetensors").is_file()
    assert codes == [KILLED] * 3, f"exit codes {codes}"
    assert _latest(out) == "checkpoint-4"
    _resume_and_compare(mlxgp_bin, folder, data, out, reference)


def test_training_on_a_full_disk_fails_in_one_line_and_leaves_no_checkpoint(mlxgp_bin, tiny_training, tmp_path):
    folder, data, _ = tiny_training
    out = tmp_path / "run"
    proc = _mlxgp(mlxgp_bin, *_train_args(folder, data, out), max_file_bytes=16 * 1024)
    assert "cannot write" in _one_line_error(proc, "checkpoint", progress="[train] step ")
    assert not (out / "latest").exists()
    assert list(out.iterdir()) == []


def test_training_checks_its_outputs_before_the_first_step(mlxgp_bin, tiny_training, tmp_path):
    """An --out that cannot be a folder fails before any step runs (not after the whole run), and a --log-json
    that stops taking lines (a full disk) fails the run instead of dropping them."""
    folder, data, _ = tiny_training
    taken = tmp_path / "a_file"
    taken.write_text("mine")
    proc = _mlxgp(mlxgp_bin, *_train_args(folder, data, taken))
    assert _one_line_error(proc, "train").startswith(f"[train] cannot create --out {taken}")
    assert "step 1/" not in proc.stderr and taken.read_text() == "mine"
    log = tmp_path / "log.jsonl"
    log.write_text("x" * (16 * 1024))  # already at the file-size limit below
    proc = _mlxgp(mlxgp_bin, *_train_args(folder, data, tmp_path / "run", "--log-json", log),
                  max_file_bytes=16 * 1024)
    assert _one_line_error(proc, "train", progress="[train] step ") == \
        f"[train] cannot write --log-json file '{log}' (disk full?)"


# ---------------------------------------------------------------------------------------------------
# convert


def test_convert_leaves_the_users_files_and_takes_a_trailing_slash(mlxgp_bin, tiny_hf, tmp_path):
    """The temporary folder has a name of its own: a user's `<out>.part` survives; `out/` names the folder out."""
    mine = tmp_path / "mlx.part"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    _ok(_mlxgp(mlxgp_bin, "convert", "--hf-path", tiny_hf, "--mlx-path", tmp_path / "mlx"))
    assert (mine / "notes.txt").read_text() == "mine" and (tmp_path / "mlx" / "config.json").exists()
    _ok(_mlxgp(mlxgp_bin, "convert", "--hf-path", tiny_hf, "--mlx-path", f"{tmp_path / 'slash'}/"))
    assert (tmp_path / "slash" / "model.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    return tiny_models.make_tiny_model("llama", tmp_path_factory.mktemp("faults_convert") / "hf")[1]


def _logits(mlxgp_bin, folder, out):
    _ok(_mlxgp(mlxgp_bin, "logits", "--model", folder, "--input-ids", "1,5,9,12", "--out", out))
    return load_file(str(out))["logits"]


def test_convert_killed_before_the_rename_leaves_no_model_and_reruns_cleanly(mlxgp_bin, tiny_hf, tmp_path):
    dst = tmp_path / "mlx"
    assert _mlxgp(mlxgp_bin, "convert", "--hf-path", tiny_hf, "--mlx-path", dst,
                  kill_at="convert-written").returncode == KILLED
    assert not dst.exists()
    _ok(_mlxgp(mlxgp_bin, "convert", "--hf-path", tiny_hf, "--mlx-path", dst))
    assert _leftovers(tmp_path) == []
    assert np.array_equal(_logits(mlxgp_bin, dst, tmp_path / "a.safetensors"),
                          _logits(mlxgp_bin, tiny_hf, tmp_path / "b.safetensors"))


def test_convert_on_a_full_disk_fails_in_one_line_and_leaves_nothing(mlxgp_bin, tiny_hf, tmp_path):
    dst = tmp_path / "mlx"
    proc = _mlxgp(mlxgp_bin, "convert", "--hf-path", tiny_hf, "--mlx-path", dst, max_file_bytes=16 * 1024)
    assert "cannot write" in _one_line_error(proc, "convert")
    assert not dst.exists() and _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------------
# resident memory of a long generation


def test_rotating_cache_keeps_resident_memory_flat(mlxgp_bin):
    """500 tokens with a 64-position rotating cache: RSS after the first tenth of the run does not grow.
    The control run (default cache) shows the measure sees the growth of a cache that keeps every token."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import soak_rss

    rotating = soak_rss.soak(mlxgp_bin, 500, max_kv_size=64)
    full = soak_rss.soak(mlxgp_bin, 500)
    print(f"\nrotating: {rotating['rss_mib_by_tenth']}\nfull: {full['rss_mib_by_tenth']}")
    assert full["growth_after_warmup_mib"] > 12, full
    assert rotating["growth_after_warmup_mib"] < 4, rotating
