"""The documented API as a contract: bad hyper-parameters, targets and argument types are refused in one
`[component] ...` line (as torch / transformers refuse them), transformers' spellings are accepted,
conflicting aliases are refused, an abandoned stream stops its worker, and the docs' claims hold."""
import math
import os
import re
import subprocess
import sys

import pytest

from conftest import CACHE, ROOT

HF_F32 = CACHE / "models" / "smollm2-135m-hf-f32"
MLX_Q4 = CACHE / "models" / "smollm2-135m-mlx-q4"


def one_line(excinfo, component):
    message = str(excinfo.value)
    assert message.startswith(f"[{component}] ") and "\n" not in message, message
    return message


# --- 1. optimizer hyper-parameters -----------------------------------------------------------------

@pytest.mark.parametrize("opt, kwargs, error, needle", [
    ("AdamW", {"learning_rate": math.nan}, ValueError, "AdamW learning_rate must be a finite number >= 0, got nan"),
    ("AdamW", {"learning_rate": math.inf}, ValueError, "learning_rate"),
    ("AdamW", {"learning_rate": 1e39}, ValueError, "learning_rate"),  # finite in float64, inf in float32
    ("AdamW", {"learning_rate": -1e-3}, ValueError, "learning_rate"),
    ("AdamW", {"weight_decay": math.inf}, ValueError, "weight_decay"),
    ("AdamW", {"weight_decay": math.nan}, ValueError, "weight_decay"),
    ("AdamW", {"weight_decay": -0.1}, ValueError, "weight_decay"),
    ("AdamW", {"betas": (1.0, 0.999)}, ValueError, r"betas\[0\] must be in \[0, 1\)"),
    ("AdamW", {"betas": (0.9, -0.1)}, ValueError, r"betas\[1\]"),
    ("AdamW", {"betas": (0.9, 0.9999999999)}, ValueError, r"betas\[1\]"),  # 1.0 in float32
    ("AdamW", {"betas": (0.9, math.nan)}, ValueError, r"betas\[1\]"),
    ("AdamW", {"betas": 0.9}, TypeError, "betas must be a pair"),
    ("AdamW", {"eps": 0.0}, ValueError, "eps must be a finite number > 0"),
    ("AdamW", {"eps": -1e-8}, ValueError, "eps"),
    ("AdamW", {"eps": math.inf}, ValueError, "eps"),
    ("AdamW", {"learning_rate": "1e-3"}, TypeError, "learning_rate must be a number, got str"),
    ("AdamW", {"warmup_steps": -1}, ValueError, "warmup_steps must be >= 0"),
    ("SGD", {"learning_rate": math.nan}, ValueError, "SGD learning_rate"),
    ("SGD", {"learning_rate": -1.0}, ValueError, "SGD learning_rate"),
    ("SGD", {"learning_rate": -1e39}, ValueError, "SGD learning_rate"),
    ("SGD", {"weight_decay": math.inf}, ValueError, "SGD weight_decay"),
    ("SGD", {"weight_decay": -1.0}, ValueError, "SGD weight_decay"),
    ("SGD", {"momentum": -0.5}, ValueError, "SGD momentum must be a finite number >= 0"),
    ("SGD", {"momentum": math.nan}, ValueError, "SGD momentum"),
    ("SGD", {"nesterov": "yes"}, TypeError, "SGD nesterov must be True or False"),
    ("SGD", {"total_steps": 1.5}, TypeError, "SGD total_steps must be an int"),
])
def test_optimizer_hyper_parameters_are_refused_at_construction(mgp, opt, kwargs, error, needle):
    with pytest.raises(error, match=needle) as e:
        getattr(mgp, opt)(**kwargs)
    one_line(e, "train")


def test_valid_hyper_parameters_still_train(mgp, tiny_llama):
    import mlx.core as mx

    model, _ = mgp.load(tiny_llama)
    batch = mx.array([[1, 5, 9, 13, 7]])
    for opt in (mgp.AdamW(learning_rate=0.0, betas=[0.0, 0.5], eps=1e-6, weight_decay=0.0),
                mgp.SGD(learning_rate=1e-3, momentum=0.9, nesterov=True)):
        r = mgp.train_step(model, batch, opt, mgp.TrainingConfig())
        assert math.isfinite(r["loss"])
    assert all(mx.all(mx.isfinite(p)).item() for p in model.parameters().values())


# --- 2. xent_loss targets ----------------------------------------------------------------------------

def test_xent_loss_refuses_targets_out_of_bounds(mgp):
    import mlx.core as mx
    import numpy as np
    import torch

    for bad, shown in (([0, 7], "7"), ([0, 5], "5"), ([-1, 0], "-1")):
        with pytest.raises(ValueError, match=rf"target {shown} is out of bounds: targets must be in \[0, 5\)") as e:
            mgp.xent_loss(mx.zeros((2, 5)), mx.array(bad))
        one_line(e, "loss")
    with pytest.raises(ValueError, match="targets must be integer"):  # not truncated to ints
        mgp.xent_loss(mx.zeros((2, 5)), [0.5, 1.7])
    # ignore_index (the default -100, or another one, even outside [0, classes)) is not out of bounds.
    logits = mx.array(np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32))
    for targets, ignore in (([0, -100, 4], -100), ([0, 7, 4], 7), ([2, 3, 3], 3)):
        loss, n = mgp.xent_loss(logits, targets, ignore_index=ignore)
        ref = torch.nn.functional.cross_entropy(torch.tensor(np.array(logits)), torch.tensor(targets),
                                                ignore_index=ignore)
        assert abs(loss.item() - ref.item()) < 1e-5 and n.item() == sum(t != ignore for t in targets)


# --- 3. steering prompts -----------------------------------------------------------------------------

def test_steering_refuses_a_bare_string(mgp, default_model_f32):
    model, tokenizer = default_model_f32
    for pos, neg, name in (("I love it!", ["I hate it."], "positive"), (["I love it!"], "I hate it.", "negative")):
        with pytest.raises(TypeError, match=rf"{name} must be a list of prompts \(str or token id lists\), got str") as e:
            mgp.extract_steering_vector(model, tokenizer, pos, neg, layer=12)
        one_line(e, "steer")
    v = mgp.extract_steering_vector(model, tokenizer, ["I love it!"], ["I hate it."], layer=12)
    ids = mgp.extract_steering_vector(model, tokenizer, [tokenizer.encode("I love it!")],
                                      [tokenizer.encode("I hate it.")], layer=12)
    assert v.shape == (model.args.hidden_size,) and (abs(v - ids)).max().item() == 0


# --- 4. argument types reaching the binding ----------------------------------------------------------

def wrong_types(mgp, model, tokenizer):
    import mlx.core as mx

    v = mx.ones((model.args.hidden_size,))
    return [
        ("hooks", "vector", lambda: mgp.ResidualInjectionHook(3, [1.0] * 576)),
        ("hooks", "layers", lambda: mgp.ResidualInjectionHook("3", v)),
        ("hooks", "alpha", lambda: mgp.LogitBiasHook(v, alpha="big")),
        ("hooks", "n_virtual", lambda: mgp.SoftPromptHook("8")),
        ("hooks", "reduce", lambda: mgp.ActivationCaptureHook(3, reduce=None)),
        ("hooks", "hook", lambda: mgp.add_hook(model, "hook")),
        ("generate", "hooks[0]", lambda: mgp.generate(model, tokenizer, "Hi", max_tokens=2, hooks=[1])),
        ("generate", "hooks", lambda: mgp.stream_generate(model, tokenizer, "Hi", max_tokens=2, hooks=1)),
        ("generate", "callback", lambda: mgp.generate(model, tokenizer, "Hi", max_tokens=2, callback=5)),
        ("generate", "stop_callback", lambda: mgp.stream_generate(model, tokenizer, "Hi", stop_callback=5)),
        ("tokenizer", "text", lambda: tokenizer.encode(None)),
        ("tokenizer", "add_special_tokens", lambda: tokenizer.encode("Hi", add_special_tokens="no")),
        ("tokenizer", "ids", lambda: tokenizer.decode("abc")),
        ("tokenizer", "conversation[0]", lambda: tokenizer.apply_chat_template(["hi"])),
        ("model", "value", lambda: model.__setitem__("_x", [1, 2])),
        ("model", "key", lambda: model.__getitem__(3)),
        ("model", "tokens", lambda: model([[1, 2, 3]])),
        ("load", "path_or_gguf", lambda: mgp.load(5)),
        ("load", "dtype", lambda: mgp.load("default", dtype=32)),
        ("train", "dtype", lambda: mgp.TrainingConfig(dtype=5)),
        ("train", "trainable", lambda: mgp.TrainingConfig(trainable="_soft_prompt")),
        ("train", "cfg", lambda: mgp.train_step(model, mx.array([[1, 2, 3]]), mgp.SGD(), cfg={"dtype": "bf16"})),
        ("train", "pad_id", lambda: mgp.train_step(model, mx.array([[1, 2, 3]]), mgp.SGD(), pad_id="0")),
        ("loss", "logits", lambda: mgp.xent_loss([[0.0, 1.0]], [0])),
        ("lora", "target_modules", lambda: mgp.add_lora(model, target_modules="q_proj")),
        ("distributed", "group", lambda: mgp.shard_model(model, 2)),
    ]


def test_wrong_argument_types_are_one_line(mgp, default_model):
    model, tokenizer = default_model
    for component, name, call in wrong_types(mgp, model, tokenizer):
        with pytest.raises(TypeError) as e:
            call()
        message = one_line(e, component)
        assert message.startswith(f"[{component}] {name} must be "), message
    assert model.num_hooks() == 0 and "_x" not in model


def test_checked_entry_points_keep_what_the_binding_takes(mgp, default_model):
    """numpy / 0-d mlx scalars for numbers and ints, arrays and ranges for id lists, Path objects for paths."""
    import mlx.core as mx
    import numpy as np

    model, tokenizer = default_model
    ids = tokenizer.encode("Hello world")
    text = tokenizer.decode(ids)
    assert tokenizer.decode(mx.array(ids)) == tokenizer.decode(np.array(ids)) == tokenizer.decode(tuple(ids)) == text
    hook = mgp.ResidualInjectionHook(np.int64(3), mx.ones((model.args.hidden_size,)), alpha=np.float32(0.5))
    assert hook.layers == [3] and isinstance(hook, mgp.Hook)
    assert mgp.SoftPromptHook(mx.array(4)).n_virtual == 4
    out = mgp.generate(model, tokenizer, "Hi", max_tokens=2, hooks=(hook,))
    assert len(out["tokens"]) == 2 and model.num_hooks() == 0


# --- 5. sequence_bias in transformers' spelling ------------------------------------------------------

def test_sequence_bias_takes_transformers_dict(mgp, default_model):
    model, tokenizer = default_model
    as_dict = mgp.GenerationConfig(max_new_tokens=6, sequence_bias={(29,): -100.0, (504, 3575): 2.5})
    as_list = mgp.GenerationConfig(max_new_tokens=6, sequence_bias=[[[29], -100.0], [[504, 3575], 2.5]])
    assert as_dict.sequence_bias == as_list.sequence_bias == [[[29], -100.0], [[504, 3575], 2.5]]
    assert as_dict == as_list
    plain = mgp.generate(model, tokenizer, "Hi", mgp.GenerationConfig(max_new_tokens=6))["tokens"]
    banned = {(plain[0],): -100.0}  # the greedy first token, banned
    out = mgp.generate(model, tokenizer, "Hi", mgp.GenerationConfig(max_new_tokens=6, sequence_bias=banned))
    assert out["tokens"][0] != plain[0]
    assert out["tokens"] == mgp.generate(model, tokenizer, "Hi", max_new_tokens=6,
                                         sequence_bias=[[[plain[0]], -100.0]])["tokens"]
    with pytest.raises(ValueError, match="keys must be tuples of token ids, got 29") as e:
        mgp.GenerationConfig(sequence_bias={29: -1.0})
    one_line(e, "config")


# --- 6. aliases ----------------------------------------------------------------------------------------

def test_conflicting_aliases_are_refused(mgp, default_model):
    model, tokenizer = default_model
    with pytest.raises(ValueError, match="max_tokens=3 and max_new_tokens=5 set the same field 'max_new_tokens'") as e:
        mgp.GenerationConfig(max_tokens=3, max_new_tokens=5)
    one_line(e, "config")
    with pytest.raises(ValueError, match="draft_model"):
        mgp.GenerationConfig(use_speculative=True, draft_model_id="a", draft_model="b")
    with pytest.raises(ValueError, match="max_new_tokens"):
        mgp.generate(model, tokenizer, "Hi", max_tokens=2, max_new_tokens=3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        mgp.GenerationConfig().update(max_new_tokens=2, max_tokens=4)
    # The same value under both names is one setting; a later call's keyword still overrides the config.
    assert mgp.GenerationConfig(max_tokens=5, max_new_tokens=5).max_new_tokens == 5
    assert mgp.GenerationConfig(use_speculative=True, draft_model_id="d", draft_model="d").draft_model == "d"
    cfg = mgp.GenerationConfig(max_new_tokens=3)
    assert cfg.copy(max_tokens=7).max_new_tokens == 7
    assert len(mgp.generate(model, tokenizer, "Hi", cfg, max_tokens=2, min_new_tokens=2)["tokens"]) == 2


# --- 7. leaving a stream early -------------------------------------------------------------------------

BREAK_SCRIPT = """
from mlx_gen_parity import load, GenerationConfig, stream_generate
m, tok = load("default")
for i, (t, x) in enumerate(stream_generate(m, tok, "Hi", GenerationConfig(max_tokens=50))):
    if i == 2:
        break
kept = stream_generate(m, tok, "Hi", GenerationConfig(max_tokens=50))
next(kept)  # left open at exit
"""


def test_breaking_out_of_a_stream_exits_cleanly(default_gguf):
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    for run in range(20):
        proc = subprocess.run([sys.executable, "-c", BREAK_SCRIPT], capture_output=True, text=True, timeout=120,
                              env=env)
        assert proc.returncode == 0, (run, proc.returncode, proc.stderr[-2000:])


def test_closing_a_stream_stops_the_worker(mgp, default_model):
    import gc
    import time

    model, tokenizer = default_model
    long = mgp.GenerationConfig(max_new_tokens=4000, min_new_tokens=4000)
    stream = mgp.stream_generate(model, tokenizer, "Hi", long)
    assert len([next(stream) for _ in range(3)]) == 3
    start = time.time()
    stream.close()
    assert not stream._thread.is_alive() and time.time() - start < 5
    assert list(stream) == []
    stream = mgp.stream_generate(model, tokenizer, "Hi", long)
    next(stream)
    worker = stream._thread
    del stream
    gc.collect()
    worker.join(timeout=5)
    assert not worker.is_alive()
    # A user's stop_callback still applies, and a stream read to its end is unchanged.
    stopped = mgp.stream_generate(model, tokenizer, "Hi", max_tokens=12, stop_callback=lambda ids: len(ids) >= 12)
    assert list(stopped) and stopped.result["finish_reason"] == "stop_callback"
    full = mgp.stream_generate(model, tokenizer, "Hi", max_tokens=8)
    assert [t for t, _ in full] == full.result["tokens"] == mgp.generate(model, tokenizer, "Hi", max_tokens=8)["tokens"]


# --- 8. docs/python.md training examples -----------------------------------------------------------------

def python_md_block(title):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "python.md").read_text(), re.S)
    (code,) = [b for b in blocks if b.startswith(f"# {title}")]
    return code


def test_soft_prompt_example_trains_a_real_model(capsys):
    """The soft-prompt block as written, on SmolLM2-135M (fp32 HF folder): finite losses and soft prompt
    (an all-zero initialisation gives NaN gradients there, in torch too)."""
    import mlx.core as mx

    assert HF_F32.is_dir(), f"{HF_F32} missing: run scripts/setup.sh"
    code = python_md_block("Training: a soft prompt").replace('"path/to/hf-or-mlx-folder"', repr(str(HF_F32)))
    assert "path/to/" not in code
    ns = {}
    exec(compile(code, "docs/python.md: soft prompt", "exec"), ns)
    assert math.isfinite(ns["r"]["loss"]) and mx.all(mx.isfinite(ns["model"]["_soft_prompt"])).item()
    assert ns["opt"].state["step"].item() == 3


def test_distributed_example_names_a_float_folder(mgp):
    """The block's full fine-tuning loads a float folder: a quantized MLX folder has no trainable float
    weights, and trains once loaded with dtype="float32" (as its comment says)."""
    import mlx.core as mx

    code = python_md_block("Distributed")
    assert 'trained, _ = load("path/to/float-folder")' in code and 'dtype="float32"' in code
    assert MLX_Q4.is_dir(), f"{MLX_Q4} missing: run scripts/setup.sh"
    model, tokenizer = mgp.load(MLX_Q4)
    batch = mx.array([tokenizer.encode("Some training text.")] * 2)
    with pytest.raises(ValueError):
        mgp.train_step(model, batch, mgp.SGD(learning_rate=1e-2), mgp.TrainingConfig())
    model, _ = mgp.load(MLX_Q4, dtype="float32")
    assert math.isfinite(mgp.train_step(model, batch, mgp.SGD(learning_rate=1e-2), mgp.TrainingConfig())["loss"])


# --- 9. docs/parity.md tokenizer claim -------------------------------------------------------------------

def test_parity_doc_tokenizer_references(mgp, tmp_path):
    """Yi: `tokenizers` on the file and transformers on the folder disagree, so mlxgp matches each on its own
    input; the doc says so, with the numbers computed here."""
    import shutil

    import transformers
    from tokenizers import Tokenizer

    folder = CACHE / "tokenizers" / "yi"
    assert (folder / "tokenizer.json").exists(), f"{folder} missing: run scripts/fetch_tokenizers.sh"
    solo = tmp_path / "yi"
    solo.mkdir()
    shutil.copy(folder / "tokenizer.json", solo / "tokenizer.json")
    raw = Tokenizer.from_file(str(folder / "tokenizer.json")).encode("Hello world").ids
    hf = transformers.AutoTokenizer.from_pretrained(folder)("Hello world")["input_ids"]
    assert raw != hf
    assert mgp._core.load_tokenizer(str(solo)).encode("Hello world") == raw
    assert mgp._core.load_tokenizer(str(folder)).encode("Hello world") == hf
    doc = " ".join((ROOT / "docs" / "parity.md").read_text().split())
    assert "both to `tokenizers` on the file alone and to transformers on the folder" not in doc
    assert f'"Hello world" is {raw} with `tokenizers` on the file, {hf} with transformers on the folder' in doc
