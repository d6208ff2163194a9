"""The fixed benchmark prompt. Every engine receives the same token ids (not text), so tokenizer
differences cannot change the work measured; ~150 tokens keeps prefill speed meaningful."""
from pathlib import Path

PROMPT_TEXT = (
    "The history of the lighthouse is a story of engineering against the sea. Early towers burned wood "
    "or coal in open braziers, and their light was weak, smoky and easily hidden by rain. In the "
    "eighteenth century, oil lamps with polished metal reflectors made the beams brighter, and in 1822 "
    "Augustin Fresnel designed a lens built from concentric rings of glass prisms that gathered almost "
    "all of the lamp's light into a narrow, powerful beam. Keepers lived in the towers for months at a "
    "time, trimming wicks, winding the clockwork that turned the lens, and recording the weather in "
    "their logs. Today most lights are automatic, but many towers still stand. Write a short essay that "
    "explains why the Fresnel lens mattered so much, and what daily life was like for a keeper."
)


def prompt_ids(tokenizer_json: Path) -> list[int]:
    """Token ids of PROMPT_TEXT from a HF tokenizer.json (no special tokens added)."""
    from tokenizers import Tokenizer  # light import: keeps torch/mlx out of the driver

    return Tokenizer.from_file(str(tokenizer_json)).encode(PROMPT_TEXT, add_special_tokens=False).ids
