"""The fixed benchmark prompt. Every engine receives the same token ids (not text), so tokenizer
differences cannot change the work measured. ~120 tokens: long enough for a meaningful prefill speed,
short enough to keep `make bench` near 10 minutes on MLX's slow CPU matmuls."""
from pathlib import Path

PROMPT_TEXT = (
    "The history of the lighthouse is a story of engineering against the sea. Early towers burned wood "
    "or coal in open braziers, and their light was weak and easily hidden by rain. In 1822 Augustin "
    "Fresnel designed a lens built from concentric rings of glass prisms that gathered almost all of the "
    "lamp's light into a narrow, powerful beam. Keepers lived in the towers for months at a time, "
    "trimming wicks and winding the clockwork that turned the lens. Write a short essay that explains "
    "why the Fresnel lens mattered so much, and what daily life was like for a keeper."
)


def prompt_ids(tokenizer_json: Path) -> list[int]:
    """Token ids of PROMPT_TEXT from a HF tokenizer.json (no special tokens added)."""
    from tokenizers import Tokenizer  # light import: keeps torch/mlx out of the driver

    return Tokenizer.from_file(str(tokenizer_json)).encode(PROMPT_TEXT, add_special_tokens=False).ids
