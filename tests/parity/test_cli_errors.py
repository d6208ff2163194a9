"""`mlxgp generate` rejects bad input with exit code 2 and one `[component] message` line on stderr
(never a crash, a hang, or a silently wrong result)."""
import re
import subprocess

import pytest

ONE_LINE = re.compile(r"^\[([a-z_]+)\] [^\n]+\n$")


def run_raw(mlxgp_bin, *args, timeout=120):
    argv = [str(mlxgp_bin)] + [a if isinstance(a, bytes) else str(a) for a in args]
    return subprocess.run(argv, capture_output=True, timeout=timeout)


def check_error(proc, component, fragment):
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, f"exit {proc.returncode}, stderr {stderr!r}"
    m = ONE_LINE.match(stderr)
    assert m, f"stderr is not one '[component] message' line: {stderr!r}"
    assert m.group(1) == component, stderr
    assert fragment in stderr, stderr
    assert proc.stdout == b""


@pytest.fixture
def gen(mlxgp_bin, default_gguf):
    def run(*args, model=None):
        return run_raw(mlxgp_bin, "generate", "--model", model or default_gguf, *args)

    return run


@pytest.fixture
def config_file(tmp_path):
    def write(text):
        p = tmp_path / "gen.json"
        p.write_text(text)
        return p

    return write


@pytest.mark.parametrize("args,component,fragment", [
    (["--temperature", "-1"], "config", "field 'temperature' must be >= 0, got -1"),
    (["--top-p", "0"], "config", "field 'top_p' must be in (0, 1], got 0"),
    (["--top-p", "1.5"], "config", "field 'top_p' must be in (0, 1], got 1.5"),
    (["--top-k", "-2"], "config", "field 'top_k' must be >= 0, got -2"),
    (["--top-k", "many"], "config", "field 'top_k' expects an integer, got 'many'"),
    (["--max-new-tokens", "0"], "config", "field 'max_new_tokens' must be >= 1, got 0"),
    (["--max-new-tokens", "-5"], "config", "field 'max_new_tokens' must be >= 1, got -5"),
    (["--num-return-sequences", "3"], "config", "'num_return_sequences' > 1 needs do_sample=true"),
    (["--do-sample", "--temperature", "0"], "config", "--temperature 0 means greedy"),
    (["--dtype", "int8"], "load", "int8"),
    (["--bogus"], "cli", "unknown option --bogus"),
    (["--prefill-chunk-size", "0"], "cli", "--prefill-chunk-size must be between 1"),
    (["--temperature", "nan"], "config", "field 'temperature' must be a finite number"),
])
def test_bad_settings(gen, args, component, fragment):
    check_error(gen("--prompt", "Hi", *args), component, fragment)


def test_prompt_and_input_ids_are_exclusive(gen):
    check_error(gen("--prompt", "Hi", "--input-ids", "1,2"), "cli", "exactly one of --prompt, --input-ids and --prompts-file")
    check_error(gen(), "cli", "exactly one of --prompt, --input-ids and --prompts-file")
    check_error(gen("--input-ids", "1,x"), "cli", "--input-ids expects comma-separated integers")


def test_malformed_config_json(gen, config_file):
    check_error(gen("--prompt", "Hi", "--config", config_file('{"top_k": 5,')), "config",
                "malformed generation config JSON")
    check_error(gen("--prompt", "Hi", "--config", config_file('[1]')), "config", "must be an object")


def test_unknown_config_field(gen, config_file):
    check_error(gen("--prompt", "Hi", "--config", config_file('{"top_kk": 5}')), "config", "unknown field 'top_kk'")


def test_unimplemented_config_field(gen, config_file):
    check_error(gen("--prompt", "Hi", "--config", config_file('{"penalty_alpha": 0.6}')), "config",
                "field 'penalty_alpha' is not implemented yet")


def test_bad_value_in_config_file(gen, config_file):
    check_error(gen("--prompt", "Hi", "--config", config_file('{"temperature": -0.5, "do_sample": true}')), "config",
                "field 'temperature' must be >= 0, got -0.5")
    check_error(gen("--prompt", "Hi", "--config", config_file('{"top_p": "high"}')), "config",
                "field 'top_p' expects a number")


def test_missing_config_file(gen, tmp_path):
    check_error(gen("--prompt", "Hi", "--config", tmp_path / "nope.json"), "config", "cannot read --config file")


def test_invalid_utf8_prompt(gen):
    check_error(gen("--prompt", b"caf\xc3(\xff"), "tokenizer", "UTF-8")


def test_token_id_outside_vocabulary(gen):
    check_error(gen("--input-ids", "1,2,49152"), "generate",
                "token id 49152 is outside the vocabulary (size 49152)")
    check_error(gen("--input-ids", "-1"), "generate", "token id -1 is outside the vocabulary")


def test_prompt_longer_than_context(gen):
    ids = ",".join(["1"] * 8193)
    check_error(gen("--input-ids", ids), "generate", "prompt has 8193 tokens, longer than the model's context (8192)")


def test_missing_model_path(gen, tmp_path):
    proc = gen("--prompt", "Hi", model=tmp_path / "no-such-model")
    assert proc.returncode == 2, proc.stderr
    assert ONE_LINE.match(proc.stderr.decode()), proc.stderr
    assert str(tmp_path / "no-such-model") in proc.stderr.decode() or "no-such-model" in proc.stderr.decode()


def test_device_env_is_checked(mlxgp_bin, default_gguf, monkeypatch):
    """MLXGP_DEVICE picks MLX's default device; a bad value is a one-line error before anything loads."""
    monkeypatch.setenv("MLXGP_DEVICE", "tpu")
    check_error(run_raw(mlxgp_bin, "generate", "--model", default_gguf, "--prompt", "Hi"), "device",
                "MLXGP_DEVICE must be 'cpu' or 'gpu', got 'tpu'")
    monkeypatch.setenv("MLXGP_DEVICE", "cpu")
    ok = run_raw(mlxgp_bin, "generate", "--model", default_gguf, "--prompt", "Hi", "--max-new-tokens", "2")
    assert ok.returncode == 0, ok.stderr
