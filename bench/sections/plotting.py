"""One way for sections to write a PNG: matplotlib's Agg backend, a note for the report either way, and a
plot that can never fail the benchmark."""
from pathlib import Path
from typing import Callable

from . import Context


def save_plot(ctx: Context, path: Path, draw: Callable[[object], None], note: str) -> str:
    """draw(plt) makes the figure; returns `note` when it was saved, else why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "Plot: not drawn, matplotlib is missing from .venv (requirements.txt pins it: run scripts/setup.sh)."
    if not ctx.write_files:
        return "Plot: not written (--no-write)."
    try:
        draw(plt)
        path.parent.mkdir(parents=True, exist_ok=True)
        plt.gcf().tight_layout()
        plt.savefig(path)
        plt.close("all")
    except Exception as ex:  # a plot must not fail the benchmark
        plt.close("all")
        return f"Plot: drawing {path.relative_to(path.parents[1])} failed ({ex!r})."
    return note
