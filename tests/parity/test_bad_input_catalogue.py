"""The bad-input catalogue (#20): malformed inputs across every file format mlxgp reads and every CLI
command. Each must end with exit code 2, exactly one `[component] message` line on stderr naming the
problem, nothing on stdout, and no output file (or a partial one) under the name the user gave.

Model files come from a tiny random llama (tiny_models.py) saved as an HF folder and written as a GGUF;
each case breaks one thing in a copy. Besides the hand-written cases, every structural boundary of the
GGUF and the safetensors file (each header field, key, value, tensor record and tensor's data) is a
truncation point: those go through the Python package's load() in one process (the same loader), which
must raise ValueError carrying the same one-line message, and a sample of them through the CLI.

NaN or infinite weights load (checking every weight would cost a pass over the model at every load):
the first forward's logits are non-finite and generation stops there with one line
(test_cli_errors.py test_non_finite_logits_*)."""
import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

import tiny_models

ONE_LINE = r"^\[([a-z_-]+)\] [^\n]+\n$"
IDS = ["--input-ids", "1,5,9", "--max-new-tokens", "2"]


def _run(mlxgp_bin, *args, timeout=120):
    argv = [str(mlxgp_bin)] + [a if isinstance(a, bytes) else str(a) for a in args]
    return subprocess.run(argv, capture_output=True, timeout=timeout)


def _problem(proc, component, fragment, out=None):
    """'' when `proc` failed as it should, else what is wrong."""
    import re

    err = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 2:
        return f"exit {proc.returncode} (want 2): {err[-300:]!r}"
    m = re.match(ONE_LINE, err)
    if not m:
        return f"stderr is not one '[component] message' line: {err[-300:]!r}"
    if m.group(1) != component:
        return f"component [{m.group(1)}], want [{component}]: {err!r}"
    if fragment not in err:
        return f"message lacks {fragment!r}: {err!r}"
    if proc.stdout:
        return f"stdout not empty: {proc.stdout[:200]!r}"
    if out is not None and out.exists():
        return f"{out} was written"
    return ""


# ---------------------------------------------------------------------------------------------------
# the files broken below


@pytest.fixture(scope="module")
def base(tmp_path_factory, default_gguf):
    """{'hf': tiny HF folder, 'gguf': the same model as a Q8_0 GGUF, 'tok': a folder with a real tokenizer,
    'default': the default model (for text inputs, which need its tokenizer)}."""
    root = tmp_path_factory.mktemp("catalogue")
    model, hf = tiny_models.make_tiny_model("llama", root / "hf")
    gguf = tiny_models.write_tiny_gguf(model, root / "tiny.gguf")
    tok = root / "tok"
    shutil.copytree(Path(__file__).resolve().parents[2] / ".cache" / "tokenizers" / "llama3", tok)
    (root / "outs").mkdir()
    return {"hf": hf, "gguf": gguf, "tok": tok, "root": root, "default": default_gguf}


def _copy_hf(base, name):
    dst = base["root"] / "cases" / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(base["hf"], dst)
    return dst


def _file(base, name, data):
    p = base["root"] / "files" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


# ---------------------------------------------------------------------------------------------------
# safetensors layout helpers


def _st_parts(path):
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _st_bytes(header, data, header_bytes=None):
    h = header_bytes if header_bytes is not None else json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data


def _st_boundaries(path):
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header, _ = _st_parts(path)
    cuts = {0, 4, 8, 8 + n // 2, 8 + n, len(raw) - 1}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        cuts |= {8 + n + b, 8 + n + (b + e) // 2}
    return sorted(c for c in cuts if c < len(raw))


# ---------------------------------------------------------------------------------------------------
# GGUF layout helpers (gguf-py's reader gives every field's offset and parts)


def _gguf_boundaries(path):
    import gguf

    r = gguf.GGUFReader(str(path))
    cuts = set()
    for f in list(r.fields.values()) + [t.field for t in r.tensors]:
        pos = f.offset
        for part in f.parts:
            cuts.add(pos)
            pos += part.nbytes
    for t in r.tensors:
        cuts |= {int(t.data_offset), int(t.data_offset) + int(t.n_bytes) // 2}
    size = path.stat().st_size
    cuts.add(size - 1)
    return sorted(c for c in cuts if 0 <= c < size)


def _gguf_field(path, name):
    import gguf

    return gguf.GGUFReader(str(path)).fields[name]


def _gguf_tensor(path, i):
    import gguf

    return gguf.GGUFReader(str(path)).tensors[i]


def _patched(raw, offset, fmt, value):
    b = bytearray(raw)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


# ---------------------------------------------------------------------------------------------------
# the catalogue: (id, builder(base) -> (argv, component, fragment, output path or None))


def _gen(model, *extra):
    return ["generate", "--model", model, *IDS, *extra]


def _gguf_cases():
    return [
        ("gguf empty", lambda b: (_gen(_file(b, "empty.gguf", b"")), "gguf", "")),
        ("gguf 3 bytes", lambda b: (_gen(_file(b, "short.gguf", b"GGU")), "gguf", "")),
        ("gguf wrong magic", lambda b: (_gen(_file(b, "magic.gguf", b"GGUX" + b["gguf"].read_bytes()[4:])), "gguf", "")),
        ("gguf version 99", lambda b: (_gen(_file(b, "v99.gguf", _patched(b["gguf"].read_bytes(), 4, "<I", 99))),
                                       "gguf", "version")),
        ("gguf tensor count 2^40", lambda b: (_gen(_file(b, "ntensors.gguf", _patched(b["gguf"].read_bytes(), 8, "<Q",
                                                                                       1 << 40))), "gguf", "")),
        ("gguf metadata count 2^40", lambda b: (_gen(_file(b, "nkv.gguf", _patched(b["gguf"].read_bytes(), 16, "<Q",
                                                                                    1 << 40))), "gguf", "")),
        ("gguf key length 2^50", lambda b: (_gen(_file(b, "keylen.gguf", _patched(b["gguf"].read_bytes(), 24, "<Q",
                                                                                   1 << 50))), "gguf", "")),
        ("gguf value type 99", lambda b: (_gen(_file(b, "vtype.gguf", _value_type(b["gguf"], 99))), "gguf", "")),
        ("gguf tensor n_dims 99", lambda b: (_gen(_file(b, "ndims.gguf", _tensor_patch(b["gguf"], 2, "<I", 99))),
                                             "gguf", "")),
        ("gguf tensor dim 2^40", lambda b: (_gen(_file(b, "dim.gguf", _tensor_patch(b["gguf"], 3, "<Q", 1 << 40))),
                                            "gguf", "")),
        ("gguf tensor type 999", lambda b: (_gen(_file(b, "ttype.gguf", _tensor_type(b["gguf"], 999))), "gguf", "")),
        ("gguf tensor offset past the end", lambda b: (_gen(_file(b, "toff.gguf", _tensor_offset(b["gguf"], 1 << 40))),
                                                       "gguf", "")),
        ("gguf tensor offset misaligned", lambda b: (_gen(_file(b, "talign.gguf", _tensor_offset(b["gguf"], 3))),
                                                     "gguf", "")),
        ("gguf tensors overlapping", lambda b: (_gen(_file(b, "overlap.gguf", _tensor_offset(b["gguf"], 0, index=1))),
                                                "gguf", "")),
        ("gguf cut in the first tensor's data",
         lambda b: (_gen(_file(b, "cutdata.gguf", b["gguf"].read_bytes()[:int(_gguf_tensor(b["gguf"], 0).data_offset) + 7])),
                    "gguf", "")),
        ("gguf last byte missing", lambda b: (_gen(_file(b, "cutlast.gguf", b["gguf"].read_bytes()[:-1])), "gguf", "")),
        ("gguf block_count 10^9", lambda b: (_gen(_file(b, "blocks.gguf", _u32_field(b["gguf"], "llama.block_count",
                                                                                     10 ** 9))), "", "")),
        ("gguf embedding_length 2^31-1", lambda b: (_gen(_file(b, "embd.gguf", _u32_field(
            b["gguf"], "llama.embedding_length", 2 ** 31 - 1))), "", "")),
    ]


def _value_type(path, value):
    f = _gguf_field(path, "general.architecture")
    return _patched(path.read_bytes(), f.offset + f.parts[0].nbytes + f.parts[1].nbytes, "<I", value)


def _tensor_patch(path, part, fmt, value):
    """Tensor record 0's part: 0 name length, 1 name, 2 n_dims, 3 dims, 4 type, 5 offset."""
    f = _gguf_tensor(path, 0).field
    return _patched(path.read_bytes(), f.offset + sum(p.nbytes for p in f.parts[:part]), fmt, value)


def _tensor_type(path, value):
    f = _gguf_tensor(path, 0).field
    return _patched(path.read_bytes(), f.offset + sum(p.nbytes for p in f.parts[:-2]), "<I", value)


def _tensor_offset(path, value, index=0):
    f = _gguf_tensor(path, index).field
    return _patched(path.read_bytes(), f.offset + sum(p.nbytes for p in f.parts[:-1]), "<Q", value)


def _u32_field(path, name, value):
    f = _gguf_field(path, name)
    return _patched(path.read_bytes(), f.offset + sum(p.nbytes for p in f.parts[:-1]), "<I", value)


def _st_case(name, mutate, fragment=""):
    """A copy of the HF folder whose model.safetensors is mutate(header, data) -> bytes."""
    def build(b):
        folder = _copy_hf(b, name.replace(" ", "_"))
        header, data = _st_parts(folder / "model.safetensors")
        (folder / "model.safetensors").write_bytes(mutate(header, data))
        return _gen(folder), "safetensors", fragment
    return (f"safetensors {name}", build)


def _first(header):
    return next(k for k in header if k != "__metadata__")


def _set(header, key, field, value):
    header = json.loads(json.dumps(header))
    header[key][field] = value
    return header


def _safetensors_cases():
    emb = "model.embed_tokens.weight"
    return [
        _st_case("empty", lambda h, d: b""),
        _st_case("4 bytes", lambda h, d: b"\x10\x00\x00\x00"),
        _st_case("header length 2^63", lambda h, d: struct.pack("<Q", 1 << 63) + b"{}"),
        _st_case("header length past the end", lambda h, d: struct.pack("<Q", 10 ** 6) + b"{}"),
        _st_case("header not JSON", lambda h, d: _st_bytes(None, d, b"{not json")),
        _st_case("header a JSON array", lambda h, d: _st_bytes(None, d, b"[1,2]")),
        _st_case("header invalid UTF-8", lambda h, d: _st_bytes(None, d, b'{"\xff\xfe":{}}')),
        _st_case("unknown dtype", lambda h, d: _st_bytes(_set(h, _first(h), "dtype", "F17"), d)),
        _st_case("shape and byte count disagree", lambda h, d: _st_bytes(
            _set(h, emb, "shape", [h[emb]["shape"][0] * 2, h[emb]["shape"][1]]), d)),
        _st_case("negative dimension", lambda h, d: _st_bytes(_set(h, emb, "shape", [-1, h[emb]["shape"][1]]), d)),
        _st_case("offsets past the end", lambda h, d: _st_bytes(
            _set(h, emb, "data_offsets", [len(d) + 8, len(d) + 8 + 4 * np.prod(h[emb]["shape"]).item()]), d)),
        _st_case("begin after end", lambda h, d: _st_bytes(
            _set(h, emb, "data_offsets", [h[emb]["data_offsets"][1], h[emb]["data_offsets"][0]]), d)),
        _st_case("overlapping tensors", lambda h, d: _overlap(h, d)),
        _st_case("cut in the data", lambda h, d: _st_bytes(h, d)[:-len(d) // 2]),
        _st_case("last byte missing", lambda h, d: _st_bytes(h, d)[:-1]),
        ("safetensors weight missing", lambda b: _drop_weight(b)),
        ("safetensors duplicate tensor name", lambda b: _dup_name(b)),
        ("safetensors weight of the wrong shape", lambda b: _resave(b, "wrong_shape", lambda w: w.update(
            {"model.norm.weight": np.ones(7, np.float32)}), "model", "shape")),
    ]


def _overlap(h, d):
    h = json.loads(json.dumps(h))
    keys = [k for k in h if k != "__metadata__"]
    a, b_ = keys[0], keys[1]
    size = h[b_]["data_offsets"][1] - h[b_]["data_offsets"][0]
    start = h[a]["data_offsets"][0]
    if h[a]["data_offsets"][1] - start >= size:
        h[b_]["data_offsets"] = [start, start + size]
    return _st_bytes(h, d)


def _drop_weight(b):
    return _resave(b, "missing", lambda w: w.pop("model.layers.1.mlp.up_proj.weight"), "model", "up_proj")


def _dup_name(b):
    """The first tensor's name again, on the second tensor's bytes (JSON parsers keep one of the two:
    whichever it is, one range of the data area is left unclaimed)."""
    folder = _copy_hf(b, "dup_name")
    path = folder / "model.safetensors"
    header, data = _st_parts(path)
    text = json.dumps(header, separators=(",", ":"))
    keys = [k for k in header if k != "__metadata__"]
    entry = json.dumps({keys[0]: header[keys[1]]}, separators=(",", ":"))[1:-1]
    path.write_bytes(_st_bytes(None, data, (text[:-1] + "," + entry + "}").encode()))
    return _gen(folder), "safetensors", ""


def _resave(b, name, edit, component, fragment):
    from safetensors.numpy import load_file, save_file

    folder = _copy_hf(b, name)
    w = load_file(folder / "model.safetensors")
    edit(w)
    save_file(w, folder / "model.safetensors", metadata={"format": "pt"})
    return _gen(folder), component, fragment


def _cfg_case(name, edit, component="config", fragment=""):
    def build(b):
        folder = _copy_hf(b, "cfg_" + name.replace(" ", "_"))
        raw = (folder / "config.json").read_text()
        out = edit(json.loads(raw))
        (folder / "config.json").write_bytes(out if isinstance(out, bytes) else json.dumps(out).encode())
        return _gen(folder), component, fragment
    return (f"config.json {name}", build)


def _with(**kw):
    def edit(c):
        c.update(kw)
        return c
    return edit


def _config_cases():
    return [
        _cfg_case("not JSON", lambda c: b'{"model_type": "llama", '),
        _cfg_case("a JSON array", lambda c: b"[1, 2, 3]"),
        _cfg_case("invalid UTF-8", lambda c: json.dumps(c).encode().replace(b'"llama"', b'"ll\xffama"')),
        _cfg_case("hidden_size x layers overflow int32", _with(hidden_size=65536, num_hidden_layers=65536,
                                                               num_attention_heads=512, num_key_value_heads=512), ""),
        _cfg_case("intermediate_size 10^12", _with(intermediate_size=10 ** 12)),
        _cfg_case("vocab_size 0", _with(vocab_size=0)),
        _cfg_case("num_attention_heads 0", _with(num_attention_heads=0)),
        _cfg_case("hidden_size not a multiple of the heads", _with(hidden_size=66), ""),
        _cfg_case("rms_norm_eps -1", _with(rms_norm_eps=-1)),
        _cfg_case("rope_theta 0", lambda c: {**c, "rope_parameters": {"rope_type": "default", "rope_theta": 0}}),
        _cfg_case("max_position_embeddings -1", _with(max_position_embeddings=-1)),
        _cfg_case("num_hidden_layers 10^9", _with(num_hidden_layers=10 ** 9), "model", "1000000000 layers"),
        _cfg_case("hidden_size a string", _with(hidden_size="sixty-four")),
        _cfg_case("unknown model_type", _with(model_type="rwkv"), "model", "unknown model_type"),
    ]


def _tok_case(name, edit, fragment=""):
    def build(b):
        folder = b["root"] / "cases" / ("tok_" + name.replace(" ", "_"))
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(b["tok"], folder)
        path = folder / "tokenizer.json"
        path.write_bytes(edit(path.read_bytes()))
        return ["tokenize", "--tokenizer", path, "--text", "hello"], "tokenizer", fragment
    return (f"tokenizer.json {name}", build)


def _tokenizer_cases():
    def model_type(raw, value):
        t = json.loads(raw)
        t["model"]["type"] = value
        return json.dumps(t).encode()

    def no_vocab(raw):
        t = json.loads(raw)
        del t["model"]["vocab"]
        return json.dumps(t).encode()

    return [
        _tok_case("not JSON", lambda raw: raw[: len(raw) // 2]),
        _tok_case("invalid UTF-8", lambda raw: raw.replace(b'"model"', b'"mo\xffdel"', 1)),
        _tok_case("unknown model type", lambda raw: model_type(raw, "SentenceSplitter")),
        _tok_case("model without a vocab", no_vocab),
    ]


def _text_cases():
    def out(b, name):
        return b["root"] / "outs" / name

    def prompts(b, text):
        return _file(b, "prompts.jsonl", text)

    return [
        ("--prompt invalid UTF-8", lambda b: (["generate", "--model", b["default"], "--prompt", b"caf\xe9",
                                                "--max-new-tokens", 2], "tokenizer", "not valid UTF-8")),
        ("--prompts-file line invalid UTF-8", lambda b: (["generate", "--model", b["default"],
                                                          "--prompts-file", prompts(b, b'{"prompt": "a\xff"}\n')],
                                                         "generate", "prompts.jsonl:1: not valid UTF-8")),
        ("--prompts-file line not JSON", lambda b: (["generate", "--model", b["hf"], "--prompts-file",
                                                     prompts(b, '{"input_ids": [1, 2\n')], "generate",
                                                    "prompts.jsonl:1: malformed JSON")),
        ("--prompts-file unknown config field", lambda b: (["generate", "--model", b["hf"], "--prompts-file",
                                                            prompts(b, '{"input_ids": [1, 2], "config": {"tempo": 1}}\n')],
                                                           "generate", "unknown field 'tempo'")),
        ("--config invalid UTF-8", lambda b: (_gen(b["hf"], "--config", _file(b, "c.json", b'{"stop_strings": ["\xff"]}')),
                                              "config", "")),
        ("--config stop string invalid UTF-8 escape", lambda b: (_gen(b["hf"], "--config", _file(
            b, "c2.json", '{"stop_strings": ["\\udc80"]}')), "config", "")),
        ("train --data .txt invalid UTF-8", lambda b: (["train", "--model", b["default"], "--data",
                                                        _file(b, "d.txt", b"hello \xff world\n"), "--steps", 1,
                                                        "--out", out(b, "t1")], "tokenizer", "not valid UTF-8",
                                                       out(b, "t1"))),
        ("train --data .jsonl malformed line", lambda b: (["train", "--model", b["hf"], "--data",
                                                           _file(b, "d.jsonl", '{"input_ids": [1, 2, 3]}\n{"input_ids": [\n'),
                                                           "--steps", 1, "--out", out(b, "t2")], "data", "d.jsonl:2: malformed JSON",
                                                          out(b, "t2"))),
        ("train --data token id outside the vocabulary", lambda b: (["train", "--model", b["hf"], "--data", _file(
            b, "d2.jsonl", '{"input_ids": [1, 2, 99999]}\n'), "--steps", 1, "--seq-len", 4, "--out", out(b, "t3")],
                                                                     "data", "99999", out(b, "t3"))),
        ("chat-template syntax error", lambda b: (["chat-template", "--template-file", _file(b, "t.jinja", "{% for %}"),
                                                   "--messages-json", '[{"role": "user", "content": "hi"}]'],
                                                  "chat_template", "line 1")),
        ("chat-template messages invalid UTF-8", lambda b: (["chat-template", "--template-file",
                                                             _file(b, "t2.jinja", "{{ messages[0].content }}"),
                                                             "--messages-json", b'[{"role": "user", "content": "\xff"}]'],
                                                            "cli", "")),
        ("tokenize --text invalid UTF-8", lambda b: (["tokenize", "--tokenizer", b["tok"] / "tokenizer.json", "--text",
                                                      b"a\xffb"], "tokenizer", "not valid UTF-8")),
    ]


def _command_cases():
    def out(b, name):
        return b["root"] / "outs" / name

    return [
        ("cache-prompt --out in a missing folder", lambda b: (["cache-prompt", "--model", b["hf"], "--input-ids", "1,2,3",
                                                               "--out", b["root"] / "nowhere" / "c.safetensors"], "cli", "")),
        ("cache-prompt token id outside the vocabulary", lambda b: (["cache-prompt", "--model", b["hf"], "--input-ids",
                                                                     "1,2,99999", "--out", out(b, "c.safetensors")],
                                                                    "prompt-cache", "99999", out(b, "c.safetensors"))),
        ("generate --prompt-cache cut in half", lambda b: (_gen(b["hf"], "--prompt-cache", _half_cache(b)),
                                                           "safetensors", "truncated file")),
        ("logits token id outside the vocabulary", lambda b: (["logits", "--model", b["hf"], "--input-ids", "1,99999",
                                                               "--out", out(b, "l.safetensors")], "", "99999",
                                                              out(b, "l.safetensors"))),
        ("steer extract layer out of range", lambda b: (["steer", "extract", "--model", b["hf"], "--positive-ids",
                                                         _file(b, "p.ids", "1,2\n"), "--negative-ids",
                                                         _file(b, "n.ids", "3,4\n"), "--layer", 99, "--out",
                                                         out(b, "s.safetensors")], "", "layer", out(b, "s.safetensors"))),
        ("steer extract prompt file line invalid UTF-8", lambda b: (
            ["steer", "extract", "--model", b["default"], "--positive", _file(b, "pos.txt", b"good\ncaf\xe9\n"),
             "--negative", _file(b, "neg.txt", "bad\n"), "--layer", 3, "--out", out(b, "s2.safetensors")],
            "steer", "pos.txt' line 2: input is not valid UTF-8", out(b, "s2.safetensors"))),
        ("convert a folder without config.json", lambda b: (["convert", "--hf-path", _file(b, "x/README", "x").parent,
                                                             "--mlx-path", out(b, "conv1")], "", "config.json",
                                                            out(b, "conv1"))),
        ("convert into a non-empty folder", lambda b: (["convert", "--hf-path", b["hf"], "--mlx-path",
                                                        _file(b, "full/keep.txt", "x").parent], "convert", "")),
        ("convert --q-bits 5", lambda b: (["convert", "--hf-path", b["hf"], "--mlx-path", out(b, "conv2"), "--quantize",
                                           "--q-bits", 5], "", "5", out(b, "conv2"))),
        ("detokenize --ids not integers", lambda b: (["detokenize", "--tokenizer", b["tok"] / "tokenizer.json", "--ids",
                                                      "1,x"], "", "")),
        ("detokenize id outside the vocabulary", lambda b: (["detokenize", "--tokenizer", b["tok"] / "tokenizer.json",
                                                             "--ids", "1,10000000"],
                                                            "", "10000000")),
        ("process-logits scores file missing", lambda b: (["process-logits", "--config", _file(b, "p.json", "{}"),
                                                           "--scores", b["root"] / "none.safetensors", "--out",
                                                           out(b, "p.safetensors")], "", "", out(b, "p.safetensors"))),
        ("process-logits zero-width scores", lambda b: (["process-logits", "--config",
                                                          _file(b, "rp.json", '{"repetition_penalty": 1.5}'),
                                                          "--scores", _scores_file(b, (2, 0)), "--input-ids-file",
                                                          _file(b, "ids2.json", "[[1], [2]]"), "--out",
                                                          out(b, "pz.safetensors")], "cli", "at least one",
                                                         out(b, "pz.safetensors"))),
        ("loss input without logits", lambda b: (["loss", "--in", _st_file(b), "--out", out(b, "loss.safetensors")], "",
                                                 "", out(b, "loss.safetensors"))),
        ("serve --port 99999", lambda b: (["serve", "--model", b["hf"], "--port", 99999], "", "port")),
        ("serve --max-batch 0", lambda b: (["serve", "--model", b["hf"], "--max-batch", 0], "", "max-batch")),
        ("chat --temperature nan", lambda b: (["chat", "--model", b["hf"], "--do-sample", "--temperature", "nan"],
                                              "config", "temperature")),
        ("chat --output-scores", lambda b: (["chat", "--model", b["default"], "--output-scores"], "chat",
                                            "output_scores")),
        ("chat --num-beams 4", lambda b: (["chat", "--model", b["default"], "--num-beams", 4], "chat", "beam search")),
        ("chat --prompt-lookup-num-tokens", lambda b: (["chat", "--model", b["default"], "--prompt-lookup-num-tokens", 3],
                                                       "chat", "prompt-lookup")),
        ("train --lr inf", lambda b: (["train", "--model", b["hf"], "--data", _file(b, "ok3.jsonl", '{"input_ids": [1, 2, 3]}\n'),
                                       "--lr", "inf", "--out", out(b, "t6")], "train", "learning rate", out(b, "t6"))),
        ("train --lr nan", lambda b: (["train", "--model", b["hf"], "--data", _file(b, "ok.jsonl", '{"input_ids": [1, 2, 3]}\n'),
                                       "--lr", "nan", "--out", out(b, "t4")], "", "lr", out(b, "t4"))),
        ("train --steps 0", lambda b: (["train", "--model", b["hf"], "--data", _file(b, "ok2.jsonl", '{"input_ids": [1, 2]}\n'),
                                        "--steps", 0, "--out", out(b, "t5")], "", "steps", out(b, "t5"))),
        ("an unknown command", lambda b: (["generat"], "cli", "generat")),
    ]


def _half_cache(b):
    p = b["root"] / "files" / "half-cache.safetensors"
    if not p.exists():
        full = b["root"] / "files" / "cache.safetensors"
        full.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(b["bin"]), "cache-prompt", "--model", str(b["hf"]), "--input-ids", "1,5", "--out",
                        str(full)], check=True, capture_output=True)
        raw = full.read_bytes()
        p.write_bytes(raw[: len(raw) // 2])
    return p


def _scores_file(b, shape):
    from safetensors.numpy import save_file

    p = b["root"] / "files" / f"scores_{'x'.join(map(str, shape))}.safetensors"
    p.parent.mkdir(parents=True, exist_ok=True)
    save_file({"scores": np.zeros(shape, np.float32)}, str(p))
    return p


def _st_file(b):
    from safetensors.numpy import save_file

    p = b["root"] / "files" / "targets.safetensors"
    p.parent.mkdir(parents=True, exist_ok=True)
    save_file({"targets": np.zeros((1, 4), np.int32)}, str(p))
    return p


CATALOGUE = _gguf_cases() + _safetensors_cases() + _config_cases() + _tokenizer_cases() + _text_cases() + _command_cases()


def test_catalogue_is_large_enough():
    assert len(CATALOGUE) >= 60, len(CATALOGUE)
    assert len({name for name, _ in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.parametrize("name,build", CATALOGUE, ids=[name for name, _ in CATALOGUE])
def test_bad_input(name, build, base, mlxgp_bin):
    base["bin"] = mlxgp_bin
    argv, component, fragment, *out = build(base)
    out = out[0] if out else None
    proc = _run(mlxgp_bin, *argv)
    err = proc.stderr.decode("utf-8", "replace")
    if not component:  # any component, but one line: take what it named
        import re

        m = re.match(ONE_LINE, err)
        component = m.group(1) if m else "?"
    problem = _problem(proc, component, fragment, out)
    assert not problem, f"{name}: {problem}"


# ---------------------------------------------------------------------------------------------------
# every structural boundary


def _sweep(mlxgp_bin, raw, path, model, cuts, component, cli_samples):
    """Writes raw[:cut] to `path` for every cut and loads `model` through the Python package (one
    process): each must raise ValueError with one `[component]` line. A sample also runs the CLI."""
    import mlx_gen_parity as mgp

    problems = []
    for cut in cuts:
        path.write_bytes(raw[:cut])
        try:
            mgp.load(model)
            problems.append(f"cut at {cut}: loaded")
        except ValueError as e:
            if not str(e).startswith(f"[{component}]") or "\n" in str(e):
                problems.append(f"cut at {cut}: {str(e)!r}")
        except Exception as e:  # noqa: BLE001 - anything else is the failure being looked for
            problems.append(f"cut at {cut}: {type(e).__name__}: {e}")
    for cut in cuts[:: max(1, len(cuts) // cli_samples)]:
        path.write_bytes(raw[:cut])
        p = _problem(_run(mlxgp_bin, *_gen(model)), component, "")
        if p:
            problems.append(f"CLI, cut at {cut}: {p}")
    print(f"\n{component}: {len(cuts)} truncation points")
    return problems


def test_gguf_truncated_at_every_structural_boundary(base, mlxgp_bin):
    cuts = _gguf_boundaries(base["gguf"])
    assert len(cuts) > 60
    target = base["root"] / "cut.gguf"
    problems = _sweep(mlxgp_bin, base["gguf"].read_bytes(), target, target, cuts, "gguf", 8)
    assert not problems, "\n".join(problems)


def test_safetensors_truncated_at_every_structural_boundary(base, mlxgp_bin):
    folder = _copy_hf(base, "sweep")
    path = folder / "model.safetensors"
    problems = _sweep(mlxgp_bin, path.read_bytes(), path, folder, _st_boundaries(path), "safetensors", 6)
    assert not problems, "\n".join(problems)
