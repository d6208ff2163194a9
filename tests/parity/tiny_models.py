"""Tiny random transformers checkpoints (fixed seed, fp32) for parity tests.

`make_tiny_model(arch, out_dir)` builds one architecture with transformers itself and
save_pretrained()s it (config.json + model.safetensors), so every test compares against the real
reference implementation of that architecture. Weights are scaled up a little from transformers'
0.02 init so logits are not all near zero (a weak test)."""
from pathlib import Path

ARCHS = ("llama", "mistral", "qwen2", "qwen3")

_COMMON = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
               rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)


def tiny_config(arch: str):
    import transformers

    if arch == "llama":
        # Llama-3 rope scaling with a short original context so all three frequency bands occur,
        # plus tied embeddings (SmolLM / Llama-3.2 style).
        return transformers.LlamaConfig(
            **_COMMON, tie_word_embeddings=True,
            rope_parameters={"rope_type": "llama3", "rope_theta": 50000.0, "factor": 8.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 64})
    if arch == "llama-linear":
        return transformers.LlamaConfig(
            **_COMMON, rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0})
    if arch == "mistral":
        return transformers.MistralConfig(**_COMMON, sliding_window=4096, head_dim=16)
    if arch == "qwen2":
        return transformers.Qwen2Config(**_COMMON, rope_parameters={"rope_type": "default",
                                                                     "rope_theta": 1000000.0})
    if arch == "qwen3":
        # Explicit head_dim different from hidden/heads, as in real Qwen3 checkpoints.
        return transformers.Qwen3Config(**_COMMON, head_dim=32, tie_word_embeddings=False)
    raise ValueError(f"unknown tiny architecture {arch!r}")


def make_tiny_model(arch: str, out_dir, seed: int = 0):
    """Saves a tiny random `arch` model into out_dir; returns (model, out_dir)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = tiny_config(arch)
    cfg.dtype = torch.float32
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.08)
            elif "norm" in name:
                p.uniform_(0.5, 1.5)  # non-trivial norm weights catch a skipped or misplaced norm
            else:
                p.normal_(0.0, 0.05)  # biases (qwen2 q/k/v)
    model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    return model, out_dir


def legacy_rope_config(folder) -> None:
    """Rewrites config.json from transformers 5.x `rope_parameters` to the older top-level
    `rope_theta` + `rope_scaling` layout (what pre-5.x checkpoints and mlx-lm 0.32 read)."""
    import json

    path = Path(folder) / "config.json"
    cfg = json.loads(path.read_text())
    rope = dict(cfg.pop("rope_parameters", None) or {})
    cfg["rope_theta"] = rope.pop("rope_theta", 10000.0)
    cfg["rope_scaling"] = rope if rope.get("rope_type", "default") != "default" else None
    path.write_text(json.dumps(cfg, indent=2))
