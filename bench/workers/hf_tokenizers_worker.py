"""One cold encode of a corpus with the Rust HF `tokenizers` library; prints one JSON line.

Usage: hf_tokenizers_worker.py TOKENIZER_JSON CORPUS_FILE whole|lines
`whole` encodes the corpus as one string; `lines` encodes each line on its own with encode_batch
(sequential: TOKENIZERS_PARALLELISM=false), as `mlxgp tokenize --lines` does. No special tokens are
added; the process is fresh (the word cache starts empty, as in one `mlxgp tokenize` run); only the
encode call is timed."""
import hashlib
import json
import os
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread, like mlxgp's encode

from tokenizers import Tokenizer


def ids_digest(ids: list) -> str:
    """The same digest the bench section computes over mlxgp's ids (json of the list, sha256)."""
    return hashlib.sha256(json.dumps(ids, separators=(",", ":")).encode()).hexdigest()


def main() -> None:
    tokenizer_json, corpus, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    tok = Tokenizer.from_file(tokenizer_json)
    with open(corpus, "rb") as f:  # bytes as they are: no newline translation
        text = f.read().decode("utf-8")
    if mode == "whole":
        start = time.perf_counter()
        ids = tok.encode(text, add_special_tokens=False).ids
        seconds = time.perf_counter() - start
        tokens = len(ids)
    else:
        lines = text.split("\n")
        if text.endswith("\n"):
            lines.pop()  # as mlxgp's --lines: no empty line after the final newline
        start = time.perf_counter()
        encs = tok.encode_batch(lines, add_special_tokens=False)
        seconds = time.perf_counter() - start
        ids = [e.ids for e in encs]
        tokens = sum(len(i) for i in ids)
    nbytes = len(text.encode("utf-8"))
    json.dump({"stats": {"seconds": seconds, "bytes": nbytes, "tokens": tokens, "mb_per_s": nbytes / seconds / 1e6},
               "ids_sha256": ids_digest(ids)}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
