"""`make bench`: side-by-side speed and memory of mlxgp and its peers (mlx-lm, transformers).

Prepares the model folders it needs (once, offline), runs the registered sections (bench/sections/),
prints their tables and writes docs/performance.md. Each engine runs in its own process per measured
run. Exits 1 (and leaves docs/performance.md untouched) when any engine run failed.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PYTHON, ROOT  # noqa: E402
from report import (console_table, describe_machine, load_average, machine_busy,  # noqa: E402
                    markdown_report)
from sections import Context, load_all  # noqa: E402


def parse_args(sections: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="+", choices=sections, default=sections,
                   help="sections to run (default: all, in registry order)")
    p.add_argument("--repeats", type=int, default=3, help="measured runs per engine; the median is kept")
    p.add_argument("--max-new-tokens", type=int, default=128, help="new tokens per generation")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md", help="report to write")
    p.add_argument("--no-write", action="store_true", help="print the tables only")
    args = p.parse_args()
    if args.repeats < 1 or args.max_new_tokens < 2:
        p.error("--repeats must be >= 1 and --max-new-tokens >= 2 (decode speed needs two tokens)")
    return args


def prepare_models() -> None:
    """Builds the model folders when missing or made by an older recipe (fast no-op otherwise)."""
    subprocess.run([str(PYTHON), str(ROOT / "bench" / "prepare_models.py")], check=True)


def main() -> int:
    registry = load_all()
    args = parse_args(list(registry))
    start = time.perf_counter()
    mlxgp_bin = Path(os.environ["MLXGP_BIN"]) if os.environ.get("MLXGP_BIN") else ROOT / "build" / "mlxgp"
    machine = describe_machine(mlxgp_bin)
    busy, load_start = machine_busy(), load_average()  # before our own load
    if busy:
        print(f"[bench] warning: load average {load_start}; other work will skew the figures", flush=True)
    prepare_models()

    ctx = Context(mlxgp_bin=mlxgp_bin, python=PYTHON, repeats=args.repeats,
                  max_new_tokens=args.max_new_tokens, log=lambda s: print(s, flush=True),
                  write_files=not args.no_write)
    results, failures = [], []
    for name in args.sections:
        sec = registry[name]
        tables = sec.run(ctx)
        results.append((sec.title, tables))
        for t in tables:
            print("\n" + console_table(t) + "\n", flush=True)
            failures += t.failures

    wall = time.perf_counter() - start
    machine += [("load average at start", load_start), ("load average at end", load_average())]
    print(f"[bench] done in {wall / 60:.1f} min")
    if failures:
        print("[bench] failed runs (docs/performance.md not written):\n  " + "\n  ".join(failures),
              file=sys.stderr)
        return 1
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".md.tmp")
        tmp.write_text(markdown_report(machine, results, wall, busy))
        os.replace(tmp, args.out)
        print(f"[bench] wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
