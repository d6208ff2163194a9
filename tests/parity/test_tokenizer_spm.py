"""SentencePiece-style tokenizers (BPE with byte fallback + Metaspace / Prepend+Replace, Unigram),
the extra normalizers / pre-tokenizers / decoders, and GGUF 'llama' vocabularies: mlxgp against
HF `tokenizers` (the file's own pipeline) and transformers (what AutoTokenizer builds), live."""
import json
import shutil

import pytest

from conftest import CACHE
from test_tokenizer_parity import assert_same_ids, full_corpus, mlxgp_lines, random_id_sequences, write_jsonl

NPM = {name: CACHE / "tokenizers" / name for name in ["llama2", "gemma", "gemma3", "yi", "gpt2"]}
EDGE_TEXTS = [
    "", " ", "  ", "Hello", " Hello", "  Hello  world ", "\u2581x \u2581", "<s>Hi</s> <s> x", "a<unk>b",
    "\U0001F600\U0001F469\u200d\U0001F4BB \u4e16\u754c", "\t\n  \r\n", "\ud7ff\ue000\U0010fffd \x00\x01",
    "caf\u00e9 cafe\u0301 \uff21\uff22 \u2460 \ufb01 \u00bd", "\u0130stanbul \u03a3\u039f\u03a3 STRASSE \u1e9e",
]


def corpus():
    return EDGE_TEXTS + full_corpus()


def solo_copy(src, tmp_path):
    """The tokenizer.json alone (no config): the file's own pipeline, as `tokenizers` loads it."""
    d = tmp_path / "solo"
    d.mkdir(exist_ok=True)
    shutil.copy(src / "tokenizer.json", d / "tokenizer.json")
    return d / "tokenizer.json"


def encode_both(run_mlxgp, path, texts, f):
    out = {}
    for add in (True, False):
        args = ["tokenize", "--tokenizer", path, "--file", f, "--jsonl"] + ([] if add else ["--no-special-tokens"])
        out[add] = mlxgp_lines(run_mlxgp, *args)
    return out


def check_decode(run_mlxgp, path, seqs, g, decode):
    for skip in (False, True):
        ours = mlxgp_lines(run_mlxgp, "detokenize", "--tokenizer", path, "--file", g,
                           *(["--skip-special-tokens"] if skip else []))
        theirs = [decode(s, skip) for s in seqs]
        bad = [(s, o, h) for s, o, h in zip(seqs, ours, theirs) if o != h]
        assert not bad, f"{len(bad)}/{len(seqs)} decodes differ; first: {bad[:3]!r}"
        if not skip:  # (streaming with skipped specials is fuzzed in tests/cpp/test_tokenizer_spm.cpp)
            chunks = mlxgp_lines(run_mlxgp, "detokenize", "--tokenizer", path, "--file", g, "--stream")
            assert ["".join(c) for c in chunks] == theirs


def byte_heavy_ids(tok, n, seed):
    """Random sequences rich in <0xNN> tokens, '▁' pieces and specials, so byte runs are cut
    mid-character and Metaspace/Strip see leading spaces."""
    import random

    rng = random.Random(seed)
    bytes_ = [i for i in range(tok.get_vocab_size()) if (tok.id_to_token(i) or "").startswith("<0x")] or [0]
    spaces = [i for t, i in tok.get_vocab().items() if t.startswith("\u2581")][:2000] or [0]
    seqs = []
    for _ in range(n):
        seqs.append([rng.choice([rng.choice(bytes_), rng.choice(bytes_), rng.choice(spaces), rng.randrange(0, 5),
                                 rng.randrange(tok.get_vocab_size())]) for _ in range(rng.randint(0, 30))])
    return seqs


@pytest.mark.parametrize("name", sorted(NPM))
def test_npm_tokenizer_matches_tokenizers_and_transformers(run_mlxgp, tmp_path, name):
    from tokenizers import Tokenizer
    import transformers

    src = NPM[name]
    assert (src / "tokenizer.json").exists(), f"{src} missing: run scripts/fetch_tokenizers.sh"
    texts = corpus()
    f = write_jsonl(tmp_path / "c.jsonl", texts)
    # 1. The file alone: HF tokenizers' semantics.
    solo = solo_copy(src, tmp_path)
    ref = Tokenizer.from_file(str(solo))
    ours = encode_both(run_mlxgp, solo, texts, f)
    for add in (True, False):
        assert_same_ids(texts, ours[add], [e.ids for e in ref.encode_batch(texts, add_special_tokens=add)])
    seqs = random_id_sequences(ref.get_vocab_size(), 400, 3) + byte_heavy_ids(ref, 400, 4)
    g = write_jsonl(tmp_path / "ids.jsonl", seqs)
    check_decode(run_mlxgp, solo, seqs, g, lambda s, skip: ref.decode(s, skip_special_tokens=skip))
    # 2. With tokenizer_config.json: what transformers' AutoTokenizer builds (its class may
    # rebuild the pipeline, e.g. LlamaTokenizer's Metaspace instead of Prepend+Replace).
    hf = transformers.AutoTokenizer.from_pretrained(src)
    ours = encode_both(run_mlxgp, src / "tokenizer.json", texts, f)
    for add in (True, False):
        assert_same_ids(texts, ours[add], hf(texts, add_special_tokens=add)["input_ids"])
    check_decode(run_mlxgp, src / "tokenizer.json", seqs, g, lambda s, skip: hf.decode(s, skip_special_tokens=skip))
    print(f"{name}: {len(texts)}/{len(texts)} lines identical (file and transformers), {len(seqs)} decodes")


@pytest.mark.parametrize("cfg", [{"legacy": False}, {"add_prefix_space": False}, {"add_eos_token": True},
                                 {"add_bos_token": False, "legacy": False}])
def test_llama_class_options_follow_transformers(run_mlxgp, tmp_path, cfg):
    """LlamaTokenizer's legacy / add_prefix_space / add_bos/eos_token select the Metaspace prepend
    scheme, the decoder's Strip and the post-processor."""
    import transformers

    dst = tmp_path / "llama2"
    shutil.copytree(NPM["llama2"], dst)
    c = json.loads((dst / "tokenizer_config.json").read_text())
    c.update(cfg)
    (dst / "tokenizer_config.json").write_text(json.dumps(c))
    hf = transformers.AutoTokenizer.from_pretrained(dst)
    texts = corpus()[:700]
    f = write_jsonl(tmp_path / "c.jsonl", texts)
    ours = encode_both(run_mlxgp, dst / "tokenizer.json", texts, f)
    for add in (True, False):
        assert_same_ids(texts, ours[add], hf(texts, add_special_tokens=add)["input_ids"])
    seqs = random_id_sequences(len(hf), 300, 9)
    g = write_jsonl(tmp_path / "ids.jsonl", seqs)
    check_decode(run_mlxgp, dst / "tokenizer.json", seqs, g, lambda s, skip: hf.decode(s, skip_special_tokens=skip))


METASPACE = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
META_DEC = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
# Variants of the Llama-2 file exercising components the real files do not.
VARIANTS = [
    ("metaspace_always_split", {"normalizer": None, "pre_tokenizer": METASPACE, "decoder": META_DEC}),
    ("metaspace_first", {"normalizer": None, "pre_tokenizer": dict(METASPACE, prepend_scheme="first", split=False),
                         "decoder": dict(META_DEC, prepend_scheme="first")}),
    ("metaspace_never", {"normalizer": None, "pre_tokenizer": dict(METASPACE, prepend_scheme="never"),
                         "decoder": dict(META_DEC, prepend_scheme="never")}),
    ("nfkc_lowercase_strip", {"normalizer": {"type": "Sequence", "normalizers": [
        {"type": "NFKC"}, {"type": "Lowercase"}, {"type": "Strip", "strip_left": True, "strip_right": True},
        {"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}}),
    ("nfd_nfkd_regex_replace", {"normalizer": {"type": "Sequence", "normalizers": [
        {"type": "NFKD"}, {"type": "NFD"}, {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
        {"type": "Strip", "strip_left": False, "strip_right": True}, {"type": "NFC"}]}, "pre_tokenizer": METASPACE,
        "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, META_DEC]}}),
    ("whitespace", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Whitespace"}, METASPACE]}}),
    ("whitespace_split_digits", {"normalizer": None, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "WhitespaceSplit"}, {"type": "Digits", "individual_digits": True}, METASPACE]}}),
    ("punctuation", {"normalizer": None, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Punctuation", "behavior": "Contiguous"}, dict(METASPACE, prepend_scheme="first")]}}),
    ("bert_pre_tokenizer", {"normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "BertPreTokenizer"},
                            "decoder": None}),
    ("no_byte_fallback_unk", {"model.byte_fallback": False, "model.fuse_unk": False}),
    ("no_byte_fallback_fused_unk", {"model.byte_fallback": False, "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 2, "stop": 0}]}}),  # stop > 0 panics in tokenizers on empty tokens
]


@pytest.mark.parametrize("name,edits", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_component_variants_match_tokenizers(run_mlxgp, tmp_path, name, edits):
    from tokenizers import Tokenizer

    spec = json.loads((NPM["llama2"] / "tokenizer.json").read_text(encoding="utf-8"))
    for key, value in edits.items():
        if key.startswith("model."):
            spec["model"][key[6:]] = value
        else:
            spec[key] = value
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    ref = Tokenizer.from_file(str(path))
    texts = corpus()[:700]
    f = write_jsonl(tmp_path / "c.jsonl", texts)
    ours = encode_both(run_mlxgp, path, texts, f)
    for add in (True, False):
        assert_same_ids(texts, ours[add], [e.ids for e in ref.encode_batch(texts, add_special_tokens=add)])
    seqs = random_id_sequences(ref.get_vocab_size(), 200, 5) + byte_heavy_ids(ref, 200, 6)
    g = write_jsonl(tmp_path / "ids.jsonl", seqs)
    check_decode(run_mlxgp, path, seqs, g, lambda s, skip: ref.decode(s, skip_special_tokens=skip))


def train_unigram(texts, byte_fallback, vocab_size=1500):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"], unk_token="<unk>",
                                      shrinking_factor=0.75, max_piece_length=8)
    tok.train_from_iterator(texts, trainer)
    spec = json.loads(tok.to_str())
    if byte_fallback:
        spec["model"]["byte_fallback"] = True
        have = {p for p, _ in spec["model"]["vocab"]}
        spec["model"]["vocab"] += [[f"<0x{b:02X}>", -20.0] for b in range(256) if f"<0x{b:02X}>" not in have]
        spec["decoder"] = {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, spec["decoder"]]}
    spec["post_processor"] = {"type": "TemplateProcessing",
                              "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                         {"SpecialToken": {"id": "</s>", "type_id": 0}}], "pair": [],
                              "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
                                                 "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}
    return spec


@pytest.mark.parametrize("byte_fallback", [False, True])
def test_unigram_matches_tokenizers(run_mlxgp, tmp_path, byte_fallback):
    """A Unigram model trained here by HF tokenizers (NFKC + Metaspace, like T5/ALBERT-style files),
    with and without byte fallback: unknown characters (only part of the corpus is used for
    training) exercise the unk path."""
    from tokenizers import Tokenizer

    texts = corpus()
    spec = train_unigram(texts[:400], byte_fallback)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    ref = Tokenizer.from_file(str(path))
    f = write_jsonl(tmp_path / "c.jsonl", texts)
    ours = encode_both(run_mlxgp, path, texts, f)
    for add in (True, False):
        assert_same_ids(texts, ours[add], [e.ids for e in ref.encode_batch(texts, add_special_tokens=add)])
    assert any(0 in ids for ids in ours[False]), "the corpus should hit unknown characters"
    seqs = random_id_sequences(ref.get_vocab_size(), 400, 8)
    g = write_jsonl(tmp_path / "ids.jsonl", seqs)
    check_decode(run_mlxgp, path, seqs, g, lambda s, skip: ref.decode(s, skip_special_tokens=skip))


def write_spm_gguf(path, arch, with_merges):
    """A weightless GGUF holding the Llama-2 npm vocabulary as llama.cpp writes a SentencePiece
    vocabulary: tokens, scores (-rank), token types (unk, control, byte), no merges."""
    import gguf
    import numpy as np

    src = json.loads((NPM["llama2"] / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = src["model"]["vocab"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    types = [6 if t.startswith("<0x") and len(t) == 6 else 1 for t in tokens]
    types[0], types[1], types[2] = 2, 3, 3
    tokens.append("<tool>")  # a USER_DEFINED token
    types.append(4)
    scores = [0.0 if ty != 1 else -float(i) for i, ty in enumerate(types)]
    w = gguf.GGUFWriter(str(path), arch)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    if with_merges:
        w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in src["model"]["merges"]])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_tensor("dummy", np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("arch,with_merges", [("llama", False), ("llama", True), ("phi3", False)])
def test_gguf_llama_vocabulary_matches_transformers(run_mlxgp, tmp_path, arch, with_merges):
    import transformers

    assert (NPM["llama2"] / "tokenizer.json").exists(), "run scripts/fetch_tokenizers.sh"
    write_spm_gguf(tmp_path / "v.gguf", arch, with_merges)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="v.gguf")
    texts = ["<tool>x <s> y</s>", " <tool> "] + corpus()[:1200]
    f = write_jsonl(tmp_path / "c.jsonl", texts)
    for add in (True, False):
        args = ["tokenize", "--model", tmp_path / "v.gguf", "--file", f, "--jsonl"] + ([] if add else ["--no-special-tokens"])
        assert_same_ids(texts, mlxgp_lines(run_mlxgp, *args), hf(texts, add_special_tokens=add)["input_ids"])
    seqs = random_id_sequences(len(hf), 300, 5)
    g = write_jsonl(tmp_path / "ids.jsonl", seqs)
    for skip in (False, True):
        ours = mlxgp_lines(run_mlxgp, "detokenize", "--model", tmp_path / "v.gguf", "--file", g,
                           *(["--skip-special-tokens"] if skip else []))
        assert ours == [hf.decode(s, skip_special_tokens=skip) for s in seqs]


def test_unigram_score_ties_match_tokenizers(run_mlxgp, tmp_path):
    """Segmentations whose scores tie mathematically are decided by the last bit of the parsed
    scores; tokenizers parses them with serde_json, which can be 1 ulp off the correctly rounded
    value (here for -6.6522384582775596), and mlxgp must read them the same way."""
    from tokenizers import Tokenizer

    vocab = [["<unk>", 0.0], ["\u2581", -1.6375050409377785], ["a", -6.6522384582775596], ["aaaaaaaa", -5.29780257706639]]
    spec = {"version": "1.0", "added_tokens": [], "normalizer": None, "post_processor": None,
            "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
            "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
            "model": {"type": "Unigram", "unk_id": 0, "vocab": vocab, "byte_fallback": False}}
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    ref = Tokenizer.from_file(str(path))
    texts = ["a" * n for n in range(1, 120)] + ["a" * n + " " + "a" * (n // 3) for n in range(1, 120)]
    f = write_jsonl(tmp_path / "c.jsonl", texts)
    ours = mlxgp_lines(run_mlxgp, "tokenize", "--tokenizer", path, "--file", f, "--jsonl")
    assert_same_ids(texts, ours, [e.ids for e in ref.encode_batch(texts)])
