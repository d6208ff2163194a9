"""Builds the model folders the benchmark compares on, in the git-ignored model cache.

Run as a script (`python bench/prepare_models.py`) so that the heavy imports (torch, transformers,
mlx_lm) stay out of the benchmark's driver process. Each folder is built in a temporary sibling and
renamed into place, so a killed run never leaves a half-written folder under the real name. A folder
whose recipe stamp matches RECIPE is reused as is (idempotent); an older one is rebuilt.
"""
import fcntl
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_GGUF, HF_F32_DIR, MLX_MXFP4_DIR, MLX_NVFP4_DIR, MLX_Q4_DIR, MLX_Q8_DIR  # noqa: E402

# mlx-lm's usual 4-bit recipe (mlx_lm.convert -q defaults): affine, group 64.
Q_BITS = 4
Q_GROUP_SIZE = 64
# Bump when a build function changes, so that folders made by an older recipe are rebuilt.
RECIPE = "2"  # 2: top-level rope_theta in config.json
STAMP = ".bench-recipe"


def _build_atomically(final: Path, build) -> bool:
    """Calls build(tmp_dir) and renames tmp_dir to final, unless final carries the current recipe.
    Returns True when it (re)built the folder."""
    if (final / STAMP).is_file() and (final / STAMP).read_text().strip() == RECIPE:
        print(f"[prepare] reusing {final}")
        return False
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    for stale in final.parent.glob(f".{final.name}.tmp-*"):  # left by an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    try:
        build(tmp)
        (tmp / STAMP).write_text(RECIPE + "\n")
        if final.exists():  # an older recipe: move it aside first (rename cannot replace a folder)
            old = final.with_name(f".{final.name}.tmp-old-{os.getpid()}")
            os.rename(final, old)
            shutil.rmtree(old)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"[prepare] wrote {final}")
    return True


def _add_legacy_rope_theta(config_json: Path) -> None:
    """transformers 5 writes rope_theta only inside `rope_parameters`; mlx-lm 0.32 (models/llama.py)
    reads the top-level `rope_theta` and otherwise silently uses 10000 instead of this model's 1e5.
    Writing both keys (transformers 4.x wrote the top-level one) keeps every reader on the same RoPE."""
    config = json.loads(config_json.read_text())
    theta = (config.get("rope_parameters") or {}).get("rope_theta")
    if theta is not None and "rope_theta" not in config:
        config["rope_theta"] = theta
        config_json.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def build_hf_f32(out: Path) -> None:
    """transformers dequantizes the default GGUF to fp32; save it as a plain HF safetensors folder."""
    import torch
    import transformers

    if not DEFAULT_GGUF.exists():
        raise SystemExit(f"[prepare] default model missing at {DEFAULT_GGUF}: run `make setup`")
    src, name = str(DEFAULT_GGUF.parent), DEFAULT_GGUF.name
    tok = transformers.AutoTokenizer.from_pretrained(src, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    # Without GGUF matmul kernels transformers dequantizes every weight into plain fp32 modules, but it
    # still tags the model as "gguf-quantized" and refuses to save it; drop that stale tag.
    if any(type(m).__module__.startswith("transformers.integrations.gguf") for m in model.modules()):
        raise SystemExit("[prepare] transformers kept GGUF-packed modules; cannot save an fp32 folder")
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tok.save_pretrained(out)
    _add_legacy_rope_theta(out / "config.json")


def build_mlx_q4(out: Path) -> None:
    """mlx-lm's own converter quantizes the fp32 HF folder (it requires that `out` does not exist)."""
    from mlx_lm import convert

    convert(str(HF_F32_DIR), mlx_path=str(out), quantize=True, q_bits=Q_BITS, q_group_size=Q_GROUP_SIZE)


def build_mlx_q8(out: Path) -> None:
    """The same at 8 bits: the speculative section's draft (it predicts like the fp32 target)."""
    from mlx_lm import convert

    convert(str(HF_F32_DIR), mlx_path=str(out), quantize=True, q_bits=8, q_group_size=Q_GROUP_SIZE)


def build_mlx_mode(mode: str):
    """MLX's microscaling modes (e2m1 values, one uint8 scale per group) as mlx_lm.convert --q-mode writes them."""
    def build(out: Path) -> None:
        from mlx_lm import convert

        convert(str(HF_F32_DIR), mlx_path=str(out), quantize=True, q_mode=mode)

    return build


def main() -> None:
    HF_F32_DIR.parent.mkdir(parents=True, exist_ok=True)
    # One preparer at a time (parallel test workers may start two): the second waits, then reuses.
    with open(HF_F32_DIR.parent / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _prepare()


def _prepare() -> None:
    rebuilt = _build_atomically(HF_F32_DIR, build_hf_f32)
    for derived in (MLX_Q4_DIR, MLX_Q8_DIR, MLX_MXFP4_DIR, MLX_NVFP4_DIR):
        if rebuilt and derived.exists():
            (derived / STAMP).unlink(missing_ok=True)  # derived from the folder just rebuilt
    _build_atomically(MLX_Q4_DIR, build_mlx_q4)
    _build_atomically(MLX_Q8_DIR, build_mlx_q8)
    _build_atomically(MLX_MXFP4_DIR, build_mlx_mode("mxfp4"))
    _build_atomically(MLX_NVFP4_DIR, build_mlx_mode("nvfp4"))


if __name__ == "__main__":
    main()
