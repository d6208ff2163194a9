"""Registry of benchmark sections. A section is a function `run(ctx) -> list[Table]`, registered with
@section; bench.py runs the selected ones in registration order and reports each Table on the console
and in docs/performance.md. A later milestone adds a module here (tokenizer throughput, processor
overhead, beam search, speculative decoding, LoRA training) and lists it in MODULES."""
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class Context:
    """What every section may use; sections skip engines whose inputs are missing."""
    mlxgp_bin: Path | None
    python: Path
    repeats: int
    max_new_tokens: int
    log: Callable[[str], None] = print
    write_files: bool = True  # False under --no-write: sections leave files outside the report alone too

    def mlxgp_missing(self) -> str | None:
        """Why mlxgp engines cannot run (no binary), or None."""
        if self.mlxgp_bin is None or not self.mlxgp_bin.is_file():
            return f"mlxgp binary not found ({self.mlxgp_bin})"
        return None


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # method and caveats, printed under the table
    failures: list[str] = field(default_factory=list)  # a failed engine run; fails `make bench`


@dataclass
class Section:
    name: str
    title: str
    run: Callable[[Context], list[Table]]


SECTIONS: dict[str, Section] = {}

# Section modules, imported in this order (which is also the report's order).
MODULES = ["generation", "batching", "server_load", "matmul", "tokenizer", "processors", "structured", "hooks", "training", "beams", "speculative", "python_api", "memory", "gguf_kquants", "cpu_speed", "distributed"]


def section(name: str, title: str):
    def register(fn: Callable[[Context], list[Table]]):
        SECTIONS[name] = Section(name, title, fn)
        return fn

    return register


def load_all() -> dict[str, Section]:
    for module in MODULES:
        importlib.import_module(f"{__name__}.{module}")
    return SECTIONS
