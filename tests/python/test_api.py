"""The binding itself: the config mirrors the C++ field list, errors are Python exceptions, mlx arrays
cross without copies to numpy, callbacks and streams, and the GIL is released while generating."""
import json
import subprocess
import threading
import time

import pytest
from cpu_features import VNNI, needs_vnni  # (tests/parity, on the path: conftest.py)

PROMPT = "Once upon a time"
INT8 = ["--int8-activations"] if VNNI else []  # the CLI's side of load(int8_activations=VNNI)


def test_config_fields_follow_the_cpp_list(mgp):
    fields = [f[0] for f in mgp._core.generation_config_fields()]
    assert len(fields) > 40 and set(fields) == set(mgp.GenerationConfig.field_names())
    cfg = mgp.GenerationConfig()
    defaults = json.loads(mgp._core.generation_config_defaults())
    for name in fields:  # every C++ field is an attribute with the C++ default
        assert getattr(cfg, name) == defaults[name], name
    cfg = mgp.GenerationConfig(max_tokens=7, use_speculative=True, draft_model_id="x", force_words_ids=[[1, 2], [3]],
                               stop_strings=".")
    assert cfg.max_new_tokens == 7 and cfg.max_tokens == 7 and cfg.draft_model == "x"
    assert cfg.overrides() == {"max_new_tokens": 7, "use_speculative": True, "draft_model": "x",
                               "force_words_ids": [[1, 2], [3]], "stop_strings": "."}
    with pytest.raises(ValueError, match="use_speculative"):
        mgp.GenerationConfig(draft_model_id="x")
    late = mgp.GenerationConfig()
    late.draft_model = "x"  # attribute by attribute: consistency is checked as a whole later
    late.use_speculative = True
    late.validate()
    cfg.temperature = 0.5
    assert cfg.to_dict()["temperature"] == 0.5
    cfg.set_from_text("bad_words_ids", "1,2;3")
    assert cfg.bad_words_ids == [[1, 2], [3]]


@pytest.mark.parametrize("settings, needle", [
    ({"temperature": -1}, "temperature"),
    ({"top_p": 2.0}, "top_p"),
    ({"no_such_field": 1}, "no_such_field"),
    ({"max_new_tokens": "many"}, "max_new_tokens"),
    ({"num_beams": 0}, "num_beams"),
])
def test_bad_settings_raise_value_error(mgp, settings, needle):
    with pytest.raises(ValueError, match=needle):
        mgp.GenerationConfig(**settings)


def test_errors_are_exceptions_not_crashes(mgp, default_model, tmp_path):
    model, tokenizer = default_model
    with pytest.raises(FileNotFoundError, match=r"\[load\]"):
        mgp.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"\[load\].*config.json"):
        mgp.load(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"\[generate\]"):
        mgp.generate(model, tokenizer, [1, 10 ** 6], max_tokens=2)
    with pytest.raises(ValueError, match=r"\[hooks\]"):
        mgp.generate(model, tokenizer, PROMPT, max_tokens=2, hooks=[mgp.ResidualInjectionHook(999, "_nope", 1.0)])
    # Rows that cannot fit are refused by the library before any work, for a prompt and for a list.
    with pytest.raises(ValueError, match=r"\[generate\] 1000000 beams x vocabulary"):
        mgp.generate(model, tokenizer, PROMPT, mgp.GenerationConfig(num_beams=1000000, max_new_tokens=2))
    with pytest.raises(ValueError, match=r"\[generate\] .* rows \(the batch size, or the widest request"):
        mgp.generate(model, tokenizer, [PROMPT, PROMPT], mgp.GenerationConfig(num_beams=40000, max_new_tokens=2))
    assert model.num_hooks() == 0
    with pytest.raises(KeyError):
        model["_never_set"]
    with pytest.raises(ValueError, match=r"\[load\]"):
        mgp.load("default", dtype="int3")


def test_arrays_cross_as_mlx_arrays(mgp, default_model):
    import mlx.core as mx

    model, _ = default_model
    v = mx.arange(model.args.hidden_size, dtype=mx.float32)
    model["_persona_v"] = v
    got = model["_persona_v"]
    assert type(got) is mx.array and got.shape == v.shape and mx.array_equal(got, v).item()
    assert "_persona_v" in model.extra_keys()
    del model["_persona_v"]
    assert "_persona_v" not in model
    logits = model(mx.array([[1, 2, 3]]))
    assert type(logits) is mx.array and logits.shape == (1, 3, model.args.vocab_size)


def test_generate_matches_the_cli(mgp, default_model, mlxgp_bin):
    """The same settings through Python and through `mlxgp generate` give the same sequences."""
    model, tokenizer = default_model
    out = mgp.generate(model, tokenizer, PROMPT, max_tokens=16, temperature=0.8, do_sample=True, seed=3,
                       repetition_penalty=1.2)
    cli = json.loads(subprocess.run(
        [str(mlxgp_bin), "generate", "--model", "default", "--prompt", PROMPT, "--max-new-tokens", "16",
         "--temperature", "0.8", "--do-sample", "--seed", "3", "--repetition-penalty", "1.2", "--json"],
        capture_output=True, text=True, check=True).stdout)
    assert out["prompt_token_ids"] == cli["prompt_token_ids"]
    assert out["tokens"] == cli["sequences"][0]["token_ids"]
    assert out["text"] == cli["sequences"][0]["text"]


@needs_vnni
def test_int8_activations_through_python_and_the_cli(mgp, default_gguf, mlxgp_bin):
    """load(int8_activations=True) is the CLI's --int8-activations: the same tokens (which differ from the
    float32 activations' somewhere in 48: the setting is applied, not dropped), and the same refusals."""
    model, tokenizer = mgp.load(default_gguf, int8_activations=True)
    out = mgp.generate(model, tokenizer, PROMPT, max_tokens=48)
    cli = json.loads(subprocess.run(
        [str(mlxgp_bin), "generate", "--model", str(default_gguf), "--prompt", PROMPT, "--max-new-tokens", "48",
         "--int8-activations", "--json"], capture_output=True, text=True, check=True).stdout)
    assert out["tokens"] == cli["sequences"][0]["token_ids"]
    plain = mgp.generate(*mgp.load(default_gguf), PROMPT, max_tokens=48)
    assert plain["tokens"] != out["tokens"]
    with pytest.raises(ValueError, match=r"^\[load\] int8 activations and a dtype exclude each other"):
        mgp.load(default_gguf, dtype="float32", int8_activations=True)
    with pytest.raises(TypeError, match=r"\[load\] int8_activations must be True or False"):
        mgp.load(default_gguf, int8_activations="yes")


def test_quantized_kv_cache_through_python_and_the_cli(mgp, default_gguf, mlxgp_bin):
    """kv_bits / kv_group_size through Python are the CLI's --kv-bits / --kv-group-size (the quantized cache's
    CPU kernels behind both): the same tokens for a prompt alone and in a batch of two (with int8 activations where
    the CPU has them)."""
    model, tokenizer = mgp.load(default_gguf, int8_activations=VNNI)
    for bits, group in ((8, 64), (4, 32)):
        cli = json.loads(subprocess.run(
            [str(mlxgp_bin), "generate", "--model", str(default_gguf), "--prompt", PROMPT, "--max-new-tokens", "32",
             *INT8, "--kv-bits", str(bits), "--kv-group-size", str(group), "--json"],
            capture_output=True, text=True, check=True).stdout)
        out = mgp.generate(model, tokenizer, PROMPT, max_tokens=32, kv_bits=bits, kv_group_size=group)
        assert out["tokens"] == cli["sequences"][0]["token_ids"], (bits, group)
        batch = mgp.generate(model, tokenizer, ["Hi", PROMPT], max_tokens=32, kv_bits=bits, kv_group_size=group)
        assert batch[1]["tokens"] == out["tokens"], (bits, group)


def test_kv_cache_dtype_through_python_and_the_cli(mgp, default_gguf, mlxgp_bin):
    """kv_cache_dtype through Python is the CLI's --kv-cache-dtype: the same tokens alone and in a batch, and
    a bad name is one [config] line (with int8 activations where the CPU has them)."""
    model, tokenizer = mgp.load(default_gguf, int8_activations=VNNI)
    cli = json.loads(subprocess.run(
        [str(mlxgp_bin), "generate", "--model", str(default_gguf), "--prompt", PROMPT, "--max-new-tokens", "32",
         *INT8, "--kv-cache-dtype", "float16", "--json"],
        capture_output=True, text=True, check=True).stdout)
    out = mgp.generate(model, tokenizer, PROMPT, max_tokens=32, kv_cache_dtype="float16")
    assert out["tokens"] == cli["sequences"][0]["token_ids"]
    batch = mgp.generate(model, tokenizer, ["Hi", PROMPT], max_tokens=32, kv_cache_dtype="float16")
    assert batch[1]["tokens"] == out["tokens"]
    with pytest.raises(ValueError, match=r"^\[config\] field 'kv_cache_dtype' must be float16, bfloat16 or float32"):
        mgp.generate(model, tokenizer, PROMPT, max_tokens=2, kv_cache_dtype="half")


def test_several_sequences_and_outputs(mgp, default_model):
    model, tokenizer = default_model
    out = mgp.generate(model, tokenizer, PROMPT, max_tokens=6, do_sample=True, seed=1, num_return_sequences=3,
                       output_logprobs=True, output_scores=True)
    assert len(out["sequences"]) == 3
    for s in out["sequences"]:
        assert len(s["logprobs"]) == len(s["token_ids"]) == s["step_scores"].shape[0] == len(s["scores"])
    assert out["generated_tokens"] == sum(len(s["token_ids"]) for s in out["sequences"])


def test_stream_iterator_and_stop_callback(mgp, default_model):
    model, tokenizer = default_model
    stream = mgp.stream_generate(model, tokenizer, PROMPT, max_tokens=12)
    pieces = list(stream)
    assert [t for t, _ in pieces] == stream.result["tokens"]
    assert "".join(s for _, s in pieces) == stream.result["text"] == stream.text
    stopped = mgp.generate(model, tokenizer, PROMPT, max_tokens=12, stop_callback=lambda ids: len(ids) >= 8)
    n_prompt = len(stopped["prompt_token_ids"])
    assert stopped["finish_reason"] == "stop_callback" and len(stopped["tokens"]) == 8 - n_prompt


def test_callback_exception_propagates(mgp, default_model):
    model, tokenizer = default_model

    def boom(token, text):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        mgp.generate(model, tokenizer, PROMPT, max_tokens=8, callback=boom)
    with pytest.raises(ZeroDivisionError):
        list(mgp.stream_generate(model, tokenizer, PROMPT, max_tokens=4, stop_callback=lambda ids: 1 / 0))
    assert mgp.generate(model, tokenizer, PROMPT, max_tokens=3)["tokens"]  # still usable


def test_gil_is_released_while_generating(mgp, default_model):
    """A Python thread keeps running while another thread is inside C++ generate()."""
    model, tokenizer = default_model
    ticks, done = [0], threading.Event()

    def spin():
        while not done.is_set():
            ticks[0] += 1
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    try:
        start = ticks[0]
        mgp.generate(model, tokenizer, PROMPT, max_tokens=24)
        during = ticks[0] - start
    finally:
        done.set()
        t.join()
    assert during > 20, during


def test_chat_and_tokenizer(mgp, default_model, hf_default):
    model, tokenizer = default_model
    messages = [{"role": "user", "content": "What is 2+2?"}]
    ref = hf_default[1].apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert tokenizer.apply_chat_template(messages) == ref
    out = mgp.generate(model, tokenizer, "What is 2+2?", max_tokens=4, chat=True)
    assert out["prompt_token_ids"] == tokenizer.encode(ref, add_special_tokens=False)
    assert tokenizer.decode(tokenizer.encode("Hello world")) == hf_default[1].decode(hf_default[1]("Hello world")["input_ids"])


TOOL_CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "weather?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": "20C", "name": "get_weather", "tool_call_id": "c1"},
    {"role": "assistant", "content": "Warm.", "reasoning_content": "It is 20C."},
    {"role": "user", "content": "thanks"},
]
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "the weather",
                                                 "parameters": {"type": "object", "properties": {
                                                     "city": {"type": "string"}}}}}


@pytest.mark.parametrize("family", ["qwen2_5", "qwen3"])
def test_apply_chat_template_keeps_messages_tools_and_kwargs(mgp, family, tmp_path):
    """Every message key (tool_calls, name, tool_call_id, reasoning_content), tools=, documents= and template
    keyword arguments reach the template as in transformers' apply_chat_template; a named template is picked
    as get_chat_template picks it."""
    import shutil

    import transformers
    from conftest import CACHE

    src = CACHE / "tokenizers" / family
    tok = mgp._core.load_tokenizer(str(src))
    hf = transformers.AutoTokenizer.from_pretrained(src)
    for kwargs in ({}, {"tools": [WEATHER_TOOL]}, {"enable_thinking": False}, {"add_generation_prompt": False}):
        want = hf.apply_chat_template(TOOL_CONVERSATION, tokenize=False, **{"add_generation_prompt": True, **kwargs})
        assert tok.apply_chat_template(TOOL_CONVERSATION, **kwargs) == want, kwargs
    ids = tok.apply_chat_template(TOOL_CONVERSATION, tools=[WEATHER_TOOL], tokenize=True)
    assert ids == hf.apply_chat_template(TOOL_CONVERSATION, tools=[WEATHER_TOOL], add_generation_prompt=True,
                                         tokenize=True, return_dict=False)
    assert tok.apply_chat_template([TOOL_CONVERSATION[:2], TOOL_CONVERSATION[:3]]) == hf.apply_chat_template(
        [TOOL_CONVERSATION[:2], TOOL_CONVERSATION[:3]], tokenize=False, add_generation_prompt=True)
    assert tok.special_tokens_map == hf.special_tokens_map

    named = tmp_path / "named"
    named.mkdir()
    shutil.copy(src / "tokenizer.json", named)
    cfg = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg["chat_template"] = [{"name": "default", "template": "D {{ messages|length }}"},
                            {"name": "tool_use", "template": "T {{ tools[0].function.name }}"},
                            {"name": "rag", "template": "R {{ documents[0].title }}"}]
    (named / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    tok, hf = mgp._core.load_tokenizer(str(named)), transformers.AutoTokenizer.from_pretrained(named)
    docs = [{"title": "t", "text": "x"}]
    for kwargs in ({}, {"tools": [WEATHER_TOOL]}, {"chat_template": "rag", "documents": docs},
                   {"chat_template": "{{ bos_token }}|{{ eos_token }}"}):
        want = hf.apply_chat_template(TOOL_CONVERSATION, tokenize=False, add_generation_prompt=True, **kwargs)
        assert tok.apply_chat_template(TOOL_CONVERSATION, **kwargs) == want, kwargs
    assert tok.chat_template == hf.chat_template


def test_apply_chat_template_refuses_what_it_cannot_honour(mgp, default_model):
    _, tokenizer = default_model
    msgs = [{"role": "user", "content": "hi"}]
    for kwargs, needle in [({"continue_final_message": True}, "continue_final_message"),
                           ({"padding": True}, "padding"), ({"return_tensors": "np"}, "return_tensors"),
                           ({"tools": [print]}, "tools[0]"), ({"when": object()}, "JSON data"),
                           ({"chat_template": 3}, "chat_template")]:
        with pytest.raises((TypeError, ValueError)) as e:
            tokenizer.apply_chat_template(msgs, **kwargs)
        message = str(e.value)
        assert message.startswith("[tokenizer] ") and "\n" not in message and needle in message, message
    with pytest.raises(TypeError) as e:
        tokenizer.apply_chat_template([{"role": "user", "content": "a\ud800"}])
    assert str(e.value) == "[tokenizer] conversation holds a lone surrogate U+D800 (not valid Unicode text)"


def test_lone_surrogates_are_one_line(mgp, default_model):
    """A str without a UTF-8 form (a lone surrogate): one line naming the argument, not nanobind's list of
    signatures."""
    _, tokenizer = default_model
    for call in (lambda: tokenizer.encode("ab\ud800"), lambda: tokenizer.token_to_id("\udfff")):
        with pytest.raises(TypeError) as e:
            call()
        message = str(e.value)
        assert message.startswith("[tokenizer] ") and "\n" not in message and "lone surrogate" in message, message
    assert "U+D800 at index 2" in str(pytest.raises(TypeError, tokenizer.encode, "ab\ud800").value)


def test_a_list_of_prompts_is_one_batched_call(mgp, default_model):
    import mlx.core as mx

    model, tokenizer = default_model
    prompts = [PROMPT, "The capital of France is", "Hi"]
    cfgs = [mgp.GenerationConfig(max_tokens=6), mgp.GenerationConfig(max_tokens=4, repetition_penalty=1.3),
            mgp.GenerationConfig(max_tokens=5, do_sample=True, seed=3)]
    streamed = {}
    outs = mgp.generate(model, tokenizer, prompts, cfgs, batch_size=2,
                        callback=lambda i, token, text: streamed.setdefault(i, []).append(token))
    assert [o["prompt_token_ids"] for o in outs] == [tokenizer.encode(p) for p in prompts]
    for p, c, o in zip(prompts, cfgs, outs):
        assert o["tokens"] == mgp.generate(model, tokenizer, p, c)["tokens"]  # each equals its solo run
        assert o["tokens"] == streamed[prompts.index(p)]
    # One config for all; a [B, T] array is B prompts.
    ids = mx.array([[504, 3575, 282], [19556, 905, 30]])
    both = mgp.generate(model, tokenizer, ids, max_tokens=3)
    assert [o["tokens"] for o in both] == [mgp.generate(model, tokenizer, row, max_tokens=3)["tokens"]
                                           for row in ids.tolist()]
    with pytest.raises(ValueError, match="2 configs for 3 prompts"):
        mgp.generate(model, tokenizer, prompts, cfgs[:2])
    with pytest.raises(ValueError, match="stream_generate takes one prompt"):
        mgp.stream_generate(model, tokenizer, prompts)


def test_inputs_are_checked_not_converted(mgp, default_model):
    """Token ids, sizes, callbacks' answers and settings are taken as given or refused in one line: 504.9 is
    not token 504, a negative prompt without guidance is not ignored, a bad request names itself."""
    import mlx.core as mx
    import numpy as np

    model, tokenizer = default_model
    cfg = mgp.GenerationConfig(max_new_tokens=2)
    refused = [
        ([[504.9, 3575.6], [26843.99]], {}, TypeError, r"\[generate\] token ids must be ints, got 504.9"),
        ([True, False], {}, TypeError, "got True"),
        ([1.7, 2.2], {}, TypeError, "got 1.7"),
        (["Hi", 5], {}, TypeError, "a prompt is text, a list of token ids or an mlx array, got int"),
        ([2 ** 40], {}, ValueError, "token id 1099511627776 is out of range"),
        (mx.array([1.5, 2.0]), {}, TypeError, "token ids must be integers"),
        (["Hi"], {"batch_size": 1.5}, ValueError, "batch_size must be a whole number"),
        ("Hi", {"prefill_chunk_size": "8"}, ValueError, "prefill_chunk_size must be a whole number"),
        ("Hi", {"stop_callback": lambda ids: "yes"}, TypeError, "stop_callback must return a bool, got str"),
        ("Hi", {"negative_prompt": "bad"}, ValueError, "negative prompt needs guidance_scale other than 1"),
        ("Hi", {"negative_prompt": ["a"]}, TypeError, "token ids must be ints, got 'a'"),
    ]
    beams = mgp.GenerationConfig(max_new_tokens=2, num_beams=2)
    with pytest.raises(ValueError, match="beam search .* is not streamed"):  # the callback would never run
        mgp.generate(model, tokenizer, "Hi", beams, callback=lambda token, text: None)
    with pytest.raises(ValueError, match="beam search .* is not streamed"):
        list(mgp.stream_generate(model, tokenizer, "Hi", beams))
    for prompt, kwargs, error, message in refused:
        with pytest.raises(error, match=message):
            mgp.generate(model, tokenizer, prompt, cfg, **kwargs)
    with pytest.raises(ValueError, match=r"\[config\] field 'temperature' must be a finite number, got nan"):
        mgp.generate(model, tokenizer, "Hi", {"temperature": float("nan"), "max_new_tokens": 2})
    with pytest.raises(ValueError, match=r"\[generate\] request 2: logit_bias token id 999999 is outside"):
        mgp.generate(model, tokenizer, ["Hi", "Yo"], [cfg, mgp.GenerationConfig(max_new_tokens=2,
                                                                                logit_bias={999999: 1.0})])
    # numpy's integers and booleans are what they say.
    assert mgp.generate(model, tokenizer, [np.int64(504), 3575], cfg)["tokens"] == \
        mgp.generate(model, tokenizer, [504, 3575], cfg)["tokens"]
    assert len(mgp.generate(model, tokenizer, "Hi", cfg, stop_callback=lambda ids: np.bool_(False))["tokens"]) == 2


def test_non_finite_logits_raise_naming_the_step(mgp, tiny_llama, tmp_path):
    """A NaN weight makes every logit NaN: generate() raises instead of returning garbage ids, for one
    prompt, a batch, beams and the streaming generator; remove_invalid_values replaces them instead."""
    import shutil

    import numpy as np
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "nan"
    shutil.copytree(tiny_llama, folder)
    weights = load_file(folder / "model.safetensors")
    w = weights["model.layers.0.mlp.down_proj.weight"].copy()
    w[0, 0] = np.nan
    weights["model.layers.0.mlp.down_proj.weight"] = w
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    model, _ = mgp.load(folder)
    # A batch names the request that failed in its own step.
    step1 = r"\[generate\] (request 1: )?the model's logits at step 1 hold NaN or infinite values"
    for prompt, config in (([1, 5, 9], {}), ([[1, 5, 9], [1, 7]], {}), ([1, 5, 9], {"num_beams": 2})):
        with pytest.raises(ValueError, match=step1):
            mgp.generate(model, None, prompt, mgp.GenerationConfig(max_new_tokens=3, **config))
    with pytest.raises(ValueError, match=step1):
        list(mgp.stream_generate(model, None, [1, 5, 9], mgp.GenerationConfig(max_new_tokens=3)))
    out = mgp.generate(model, None, [1, 5, 9], mgp.GenerationConfig(max_new_tokens=3, remove_invalid_values=True))
    assert len(out["tokens"]) == 3
