"""Fixtures for the Python package tests: the package itself (installed by `make test`), the default
model loaded once through it, and the transformers reference on the same GGUF file. Nothing downloads."""
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MLXGP_CACHE", ROOT / ".cache"))
DEFAULT_GGUF = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
sys.path.insert(0, str(ROOT / "tests" / "parity"))  # tiny_models.make_tiny_model


@pytest.fixture(scope="session")
def mgp():
    import mlx_gen_parity

    return mlx_gen_parity


@pytest.fixture(scope="session")
def default_gguf():
    assert DEFAULT_GGUF.exists(), f"default model missing at {DEFAULT_GGUF}: run scripts/setup.sh"
    return DEFAULT_GGUF


@pytest.fixture(scope="session")
def default_model(mgp, default_gguf):
    """(model, tokenizer) of the default model (SmolLM2-135M Q4_1), loaded once through Python."""
    return mgp.load("default")


@pytest.fixture(scope="session")
def default_model_f32(mgp, default_gguf):
    """The default model dequantized to float32 (what transformers computes with)."""
    return mgp.load(str(default_gguf), dtype="float32")


@pytest.fixture(scope="session")
def hf_default(default_gguf):
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(default_gguf.parent, gguf_file=default_gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        default_gguf.parent, gguf_file=default_gguf.name, dtype=torch.float32)
    model.eval()
    return model, tok


@pytest.fixture(scope="session")
def mlxgp_bin():
    p = Path(os.environ.get("MLXGP_BIN", ROOT / "build" / "mlxgp"))
    assert p.exists(), f"mlxgp binary not found at {p}: run `make build`"
    return p


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """A tiny random llama HF folder (fp32 safetensors) with the default model's tokenizer files? No:
    tiny models use a 512-token vocabulary, so they are driven with token ids."""
    from tiny_models import make_tiny_model

    out = tmp_path_factory.mktemp("tiny-llama")
    make_tiny_model("llama-plain", out)
    return out


@pytest.fixture(scope="session")
def tiny_hf_tok(tmp_path_factory, default_gguf):
    """A tiny random llama HF folder with the default model's real tokenizer (vocabulary 49152), so it
    takes text prompts: config.json (legacy rope keys, as mlx-lm 0.32 reads), model.safetensors,
    tokenizer.json / tokenizer_config.json."""
    import torch
    import transformers
    from tiny_models import legacy_rope_config

    out = tmp_path_factory.mktemp("tiny-hf-tok")
    tok = transformers.AutoTokenizer.from_pretrained(default_gguf.parent, gguf_file=default_gguf.name)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                                   rms_norm_eps=1e-5, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                   tie_word_embeddings=True)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.08)
            else:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    legacy_rope_config(out)
    return out


def mlx_lm_greedy(model, ids, n, logits_processors=None):
    """mlx-lm's own greedy decode of an mlx-lm model: the reference token stream (n tokens; it does not
    stop at EOS)."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    steps = generate_step(mx.array(ids), model, max_tokens=n, logits_processors=logits_processors)
    return [int(t) for (t, _), _ in zip(steps, range(n))]
