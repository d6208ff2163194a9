"""Shared fixtures for the parity tests: the mlxgp binary, the default model, and the reference
(transformers) loaded from the same GGUF file. Nothing here downloads anything."""
import json
import os
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _read_each_gguf_once():
    """transformers 5.24 parses a GGUF's metadata twice in one from_pretrained (config, then weights; a 49k-token
    vocabulary takes seconds each time) and builds gguf-py's tensor name map once per tensor (25 ms each, 270 times
    for SmolLM2): the same objects, built once here. What the reference computes does not change; a file rewritten in
    place (another size or modification time) is read again."""
    import collections
    import functools

    import gguf

    gguf.get_tensor_name_map = functools.lru_cache(maxsize=64)(gguf.get_tensor_name_map)
    reader, recent = gguf.GGUFReader, collections.OrderedDict()

    def cached_reader(path, mode="r"):
        st = os.stat(path)
        key = (os.path.realpath(path), mode, st.st_size, st.st_mtime_ns)
        if key not in recent:
            recent[key] = reader(path, mode)
            while len(recent) > 2:
                recent.popitem(last=False)
        recent.move_to_end(key)
        return recent[key]

    gguf.GGUFReader = cached_reader


_read_each_gguf_once()
ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MLXGP_CACHE", ROOT / ".cache"))
DEFAULT_GGUF = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


# The slowest files first: `make test-parity` runs two pytest-xdist workers that each take a whole file at a
# time, and a long file handed out last would run alone at the end.
SLOW_FIRST = ["test_structured_corpus.py", "test_gguf_kquants.py", "test_processors_e2e.py", "test_speculative.py",
              "test_generate_parity.py", "test_architectures.py", "test_batch_generate.py", "test_beam_legacy.py",
              "test_distributed.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order is kept


@pytest.fixture(scope="session")
def mlxgp_bin() -> Path:
    p = Path(os.environ.get("MLXGP_BIN", ROOT / "build" / "mlxgp"))
    assert p.exists(), f"mlxgp binary not found at {p}: run `make build`"
    return p


@pytest.fixture(scope="session")
def run_mlxgp(mlxgp_bin):
    """run_mlxgp(*args, check=True) -> CompletedProcess with text stdout/stderr."""

    def run(*args, check=True, input=None, timeout=600):
        proc = subprocess.run([str(mlxgp_bin), *map(str, args)], capture_output=True, text=True,
                              input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"mlxgp {' '.join(map(str, args))} exited {proc.returncode}: {proc.stderr}")
        return proc

    return run


@pytest.fixture(scope="session")
def run_mlxgp_json(run_mlxgp):
    def run(*args):
        return json.loads(run_mlxgp(*args, "--json").stdout)

    return run


@pytest.fixture(scope="session")
def default_gguf() -> Path:
    assert DEFAULT_GGUF.exists(), f"default model missing at {DEFAULT_GGUF}: run scripts/setup.sh"
    return DEFAULT_GGUF


@pytest.fixture(scope="session")
def hf_default(default_gguf):
    """(model, tokenizer) of transformers loading the same GGUF, dequantized to fp32."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(default_gguf.parent, gguf_file=default_gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        default_gguf.parent, gguf_file=default_gguf.name, dtype=torch.float32)
    model.eval()
    return model, tok
