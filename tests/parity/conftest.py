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
