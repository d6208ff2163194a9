"""`mlxgp generate` rejects bad input with exit code 2 and one `[component] message` line on stderr
(never a crash, a hang, or a silently wrong result)."""
import re
import subprocess

import pytest

ONE_LINE = re.compile(r"^\[([a-z_-]+)\] [^\n]+\n$")


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
    # A switch given a value is refused: --do-sample=false once turned sampling on.
    (["--do-sample=false"], "cli", "--do-sample is a switch and takes no value"),
    # Values that overflow or vanish in float32, where the processors compute.
    (["--temperature", "1e-40"], "config", "field 'temperature' must be at least 1e-20 when sampling, got 1e-40"),
    (["--repetition-penalty", "1e-300"], "config", "which is 0 in float32"),
    (["--negative-prompt", "bad"], "cli", "need --guidance-scale other than 1"),
    # Settings of a strategy or cache that is not in use are refused, not ignored.
    (["--num-draft-tokens", "5"], "config", "field 'num_draft_tokens' needs use_speculative"),
    (["--prompt-lookup-num-tokens", "3", "--num-draft-tokens", "5"], "config", "num_draft_tokens' needs use_spec"),
    (["--speculative-exact-match"], "config", "field 'speculative_exact_match' needs use_speculative"),
    (["--kv-keep", "2"], "config", "field 'kv_keep' needs max_kv_size"),
    (["--kv-group-size", "32"], "config", "field 'kv_group_size' needs kv_bits"),
    # Per-step outputs with nowhere to go (the text output) are refused, not computed and dropped.
    (["--output-scores"], "cli", "--output-scores needs --json (or --scores-out)"),
    (["--output-logprobs"], "cli", "--output-logprobs needs --json"),
    (["--memory-trace", "2"], "cli", "--memory-trace needs --json"),
])
def test_bad_settings(gen, args, component, fragment):
    check_error(gen("--prompt", "Hi", *args), component, fragment)


def test_beam_only_flags_without_beams_warn_as_transformers_does(gen):
    proc = gen("--prompt", "Hi", "--max-new-tokens", "2", "--length-penalty", "2")
    assert proc.returncode == 0
    assert b"[config] warning: length_penalty / early_stopping only apply to beam search" in proc.stderr


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


# ---- issue 20: inputs that used to crash, leak an internal error or pass silently

@pytest.mark.parametrize("args,component,fragment", [
    (["--prompt", "Hi", "--max-new-tokens", "1000000000000"], "config",
     "field 'max_new_tokens' is out of range (max 2147483647), got 1000000000000"),
    (["--prompt", "Hi", "--top-k", "1000000000000"], "config", "field 'top_k' is out of range (max 2147483647), got 1000000000000"),
    (["--prompt", "Hi", "--seed", "-1"], "config", "field 'seed' is out of range (min 0), got -1"),
    (["--prompt", "Hi", "--seed", "99999999999999999999999"], "config", "field 'seed' is out of range (max 18446744073709551615)"),
    (["--input-ids", "1,99999999999"], "cli", "--input-ids value '99999999999' is out of range"),
    (["--prompt", "Hi", "--prefill-chunk-size", "99999999999999999999"], "cli", "--prefill-chunk-size is out of range (max 9223372036854775807)"),
])
def test_numbers_out_of_range(gen, args, component, fragment):
    check_error(gen(*args), component, fragment)


def test_other_commands_bound_their_integers(mlxgp_bin, default_gguf, tmp_path):
    check_error(run_raw(mlxgp_bin, "train", "--model", default_gguf, "--data", tmp_path / "d.txt", "--out", tmp_path / "o",
                        "--steps", "10000000000"), "cli", "--steps is out of range (max 2147483647), got '10000000000'")
    check_error(run_raw(mlxgp_bin, "cache-prompt", "--prompt", "Hi", "--out", tmp_path / "c.safetensors",
                        "--prefill-chunk-size", "-99999999999999999999"), "cli",
                "--prefill-chunk-size is out of range (min -9223372036854775808)")


def test_option_missing_its_value(mlxgp_bin):
    check_error(run_raw(mlxgp_bin, "generate", "--model", "--prompt", "Hi"), "cli",
                "--model needs a value (got the option --prompt instead)")


def test_directory_where_a_file_is_expected(gen, mlxgp_bin, tmp_path):
    d = tmp_path / "adir"
    d.mkdir()
    check_error(gen("--prompt", "Hi", "--config", d), "config", f"--config file '{d}' is a directory, not a file")
    check_error(run_raw(mlxgp_bin, "tokenize", "--tokenizer", d, "--text", "hi"), "tokenizer",
                f"tokenizer.json '{d}' is a directory, not a file")
    check_error(gen("--prompts-file", d), "generate", f"--prompts-file '{d}' is a directory, not a file")
    model = tmp_path / "model"
    (model / "config.json").mkdir(parents=True)
    check_error(gen("--prompt", "Hi", model=model), "load", f"'{model / 'config.json'}' is a directory, not a file")


def test_output_paths_are_checked_before_generating(gen, tmp_path):
    check_error(gen("--prompt", "Hi", "--scores-out", tmp_path), "cli", f"--scores-out '{tmp_path}' is a directory")
    check_error(gen("--prompt", "Hi", "--scores-out", tmp_path / "no" / "s.safetensors"), "cli",
                "--scores-out: directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_too_many_beams_or_sequences_are_refused_in_one_line(gen):
    check_error(gen("--prompt", "Hi", "--num-beams", "1000000"), "generate",
                "1000000 beams x vocabulary 49152 exceed MLX's 2^31-element array limit; use at most 43690")
    check_error(gen("--prompt", "Hi", "--num-beams", "40000", "--max-new-tokens", "4"), "generate",
                "40000 beams need about")
    check_error(gen("--prompt", "Hi", "--do-sample", "--num-return-sequences", "100000"), "generate",
                "100000 sequences x vocabulary 49152 exceed")


def _save_safetensors(path, tensors, metadata=None):
    import mlx.core as mx
    mx.save_safetensors(str(path), tensors, metadata=metadata or {})


def test_non_finite_steering_vector_and_prompt_cache(gen, mlxgp_bin, default_gguf, tmp_path):
    import mlx.core as mx
    v = tmp_path / "v.safetensors"
    _save_safetensors(v, {"steering_vector": mx.full((576,), float("nan"))})
    check_error(gen("--prompt", "Hi", "--steer", v, "--steer-layer", "3"), "cli",
                f"--steer file '{v}': tensor 'steering_vector' holds NaN or infinite values")
    check_error(gen("--prompt", "Hi", "--persona-bias", v), "cli", "holds NaN or infinite values")
    cache = tmp_path / "c.safetensors"
    ok = run_raw(mlxgp_bin, "cache-prompt", "--model", default_gguf, "--prompt", "Hello there", "--out", cache)
    assert ok.returncode == 0, ok.stderr
    tensors, meta = mx.load(str(cache), return_metadata=True)
    tensors["layers.3.values"] = mx.full(tensors["layers.3.values"].shape, float("nan"))
    bad = tmp_path / "bad.safetensors"
    _save_safetensors(bad, tensors, meta)
    check_error(gen("--prompt", "Hello there friend", "--prompt-cache", bad), "prompt-cache",
                f"'{bad}': layer 3 values holds NaN or infinite values")


def test_soft_prompt_positions_count_against_the_context(gen, tmp_path):
    """A soft prompt's virtual tokens sit before the prompt in the same context (8192 positions)."""
    import mlx.core as mx
    soft = tmp_path / "long_soft.safetensors"
    _save_safetensors(soft, {"soft_prompt": mx.full((8191, 576), 0.01)})
    check_error(gen("--prompt", "Hi", "--soft-prompt", soft, "--max-new-tokens", "2"), "generate",
                "prompt has 1 tokens after 8191 soft-prompt positions, which fill the model's context (8192): "
                "no position is left for a new token")


def test_prompt_cache_refuses_hooks_and_adapters_it_was_not_made_with(gen, mlxgp_bin, default_gguf, tmp_path):
    import json
    import mlx.core as mx
    v = tmp_path / "v.safetensors"
    _save_safetensors(v, {"steering_vector": mx.ones((576,))})
    soft = tmp_path / "soft.safetensors"
    _save_safetensors(soft, {"soft_prompt": mx.ones((2, 576))})
    # One LoRA adapter on layer 0's q_proj with a non-zero B, so the prompt's keys change.
    lora = tmp_path / "a.safetensors"
    pre = "model.layers.0.self_attn.q_proj"
    _save_safetensors(lora, {f"{pre}.lora_A.weight": mx.full((2, 576), 0.01), f"{pre}.lora_B.weight": mx.full((576, 2), 0.01),
                             f"{pre}.lora_scale": mx.array(1.0)},
                      {"format": "mlxgp-lora", "lora_config": json.dumps(
                          {"rank": 2, "alpha": 2.0, "dropout": 0.0, "target_modules": ["q_proj"]})})
    bare, adapted = tmp_path / "bare.safetensors", tmp_path / "adapted.safetensors"
    for out, extra in ((bare, []), (adapted, ["--lora", lora])):
        ok = run_raw(mlxgp_bin, "cache-prompt", "--model", default_gguf, "--prompt", "Hello there", "--out", out, *extra)
        assert ok.returncode == 0, ok.stderr
    check_error(gen("--prompt", "Hello there friend", "--prompt-cache", bare, "--lora", lora), "prompt-cache",
                f"'{bare}' was made with other LoRA adapters than this model has (adapters now); make it again "
                "with the same adapters")
    check_error(gen("--prompt", "Hello there friend", "--prompt-cache", adapted), "prompt-cache",
                f"'{adapted}' was made with other LoRA adapters than this model has (none now); make it again "
                "with the same adapters")
    hooks = "a saved prompt cache cannot be used with hooks that change prompt positions"
    check_error(gen("--prompt", "Hello there friend", "--prompt-cache", bare, "--soft-prompt", soft), "prompt-cache", hooks)
    check_error(gen("--prompt", "Hello there friend", "--prompt-cache", bare, "--steer", v, "--steer-layer", "2"),
                "prompt-cache", hooks)
    # The same adapters, or steering on generated positions only: the cached run equals the uncached one.
    for cache, extra in ((adapted, ["--lora", lora]), (bare, ["--steer", v, "--steer-layer", "2", "--steer-positions",
                                                              "generated"])):
        args = ["--prompt", "Hello there friend", "--max-new-tokens", "8", "--json", *extra]
        with_cache, without = gen(*args, "--prompt-cache", cache), gen(*args)
        assert with_cache.returncode == 0 and without.returncode == 0, with_cache.stderr + without.stderr
        assert json.loads(with_cache.stdout)["sequences"] == json.loads(without.stdout)["sequences"]


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory):
    """A tiny llama whose layer-1 down_proj holds one NaN: every forward's logits are NaN."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    import tiny_models

    _, folder = tiny_models.make_tiny_model("llama", tmp_path_factory.mktemp("nan_model"))
    weights = load_file(folder / "model.safetensors")
    w = weights["model.layers.1.mlp.down_proj.weight"].copy()
    w[3, 5] = np.nan
    weights["model.layers.1.mlp.down_proj.weight"] = w
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


NAN_LOGITS = "the model's logits at step {} hold NaN or infinite values"


@pytest.mark.parametrize("flags", [[], ["--do-sample", "--seed", "1"], ["--num-beams", "2"],
                                   ["--prompt-lookup-num-tokens", "2"], ["--num-beams", "2", "--num-beam-groups", "2",
                                                                         "--diversity-penalty", "0.5"]],
                         ids=["greedy", "sampling", "beams", "prompt-lookup", "group-beams"])
def test_non_finite_logits_stop_generation_naming_the_step(mlxgp_bin, nan_model, flags):
    """NaN weights are loaded (checking every weight would cost a pass over the model at each load); the
    first forward's logits are NaN, and every strategy stops there with one line instead of emitting
    garbage ids (transformers' greedy would pick an arbitrary one)."""
    proc = run_raw(mlxgp_bin, "generate", "--model", nan_model, "--input-ids", "1,5,9,12", "--max-new-tokens", "6", *flags)
    check_error(proc, "generate", NAN_LOGITS.format(1))


def test_non_finite_logits_in_a_batch_and_replaced_on_request(mlxgp_bin, nan_model, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"input_ids": [1, 5, 9]}\n{"input_ids": [1, 7]}\n')
    check_error(run_raw(mlxgp_bin, "generate", "--model", nan_model, "--prompts-file", prompts, "--max-new-tokens", "4"),
                "generate", NAN_LOGITS.format(1))
    # remove_invalid_values (transformers' InfNanRemoveLogitsProcessor) replaces them instead: the run goes on.
    cfg = tmp_path / "c.json"
    cfg.write_text('{"remove_invalid_values": true, "max_new_tokens": 4}')
    ok = run_raw(mlxgp_bin, "generate", "--model", nan_model, "--input-ids", "1,5,9", "--config", cfg)
    assert ok.returncode == 0, ok.stderr


def test_overflow_at_a_later_step_is_named(gen, tmp_path):
    """Steering on generated positions only, scaled to overflow: step 1 comes from the prompt (finite),
    step 2 from the first generated position, where the residual stream overflows to infinity (3e38 added
    after two layers) and the norms turn it into NaN."""
    import mlx.core as mx
    v = tmp_path / "v.safetensors"
    _save_safetensors(v, {"steering_vector": mx.ones((576,))})
    proc = gen("--prompt", "Hi", "--max-new-tokens", "5", "--steer", v, "--steer-layer", "3,4", "--steer-alpha", "3e38",
               "--steer-positions", "generated")
    # The text of step 1, already streamed, stays on stdout; the error is the one stderr line.
    check_error(subprocess.CompletedProcess(proc.args, proc.returncode, b"", proc.stderr), "generate",
                NAN_LOGITS.format(2))
    assert len(proc.stdout.decode().strip()) <= 8
