"""Console and Markdown rendering of section tables, and the machine description for the report."""
import datetime
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from common import ROOT
from sections import Table

PACKAGES = ["mlx", "mlx-lm", "torch", "transformers", "tokenizers"]
# A 1-minute load average above this at the start means other work shares the CPU with the benchmark.
BUSY_LOAD = 0.5


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))} (kernel {platform.release()})"
    except OSError:
        pass
    return platform.platform()


def _git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (head + (" (with uncommitted changes)" if dirty else "")) if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _mlxgp_version(binary: Path | None) -> str:
    if binary is None or not binary.is_file():
        return "not built"
    try:
        return subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                              timeout=30).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def describe_machine(mlxgp_bin: Path | None) -> list[tuple[str, str]]:
    versions = []
    for pkg in PACKAGES:
        try:
            versions.append(f"{pkg} {importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{pkg} (not installed)")
    return [
        ("date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")),
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} cores, no GPU used (MLX CPU backend)"),
        ("RAM", _ram_gib()),
        ("OS", _os_name()),
        ("Python packages", ", ".join(versions)),
        ("mlxgp", f"{_mlxgp_version(mlxgp_bin)}, commit {_git_commit()}, Release build"),
    ]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def machine_busy() -> bool:
    return os.getloadavg()[0] > BUSY_LOAD


def _numeric(cell: str) -> bool:
    try:
        float(cell.replace(",", "").rstrip("x"))
        return True
    except ValueError:
        return cell in ("-", "n/a") or "/" in cell and cell.replace("/", "").isdigit()


def console_table(table: Table) -> str:
    cells = [table.columns] + [[str(c) for c in row] for row in table.rows]

    def failed(row: list[str]) -> bool:  # "failed: ..." spans the rest of the row
        return len(row) > 2 and row[2].startswith("failed")

    widths = [max(len(r[i]) for r in cells if i < 2 or not failed(r)) for i in range(len(table.columns))]
    lines = [table.title]
    for i, row in enumerate(cells):
        if failed(row):
            lines.append("  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2]]))
        else:
            lines.append("  ".join(c.rjust(w) if i and _numeric(c) else c.ljust(w)
                                   for c, w in zip(row, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(table: Table) -> str:
    numeric = [bool(table.rows) and all(_numeric(str(r[i])) for r in table.rows if i < len(r))
               for i in range(len(table.columns))]
    out = [f"### {table.title}", "", "| " + " | ".join(table.columns) + " |",
           "|" + "|".join(" ---: " if n else " --- " for n in numeric) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in table.rows]
    if table.notes:
        out += [""] + [f"- {n}" for n in table.notes]
    return "\n".join(out)


def markdown_report(machine: list[tuple[str, str]], sections: list[tuple[str, list[Table]]],
                    wall_s: float, busy: bool) -> str:
    parts = [
        "# Performance",
        "",
        "Written by `make bench` (bench/bench.py); do not edit by hand. Figures are from one machine and one "
        "run; compare engines within a table, not across machines.",
        "",
    ]
    if busy:
        parts += [
            f"> **The machine was busy** (load average above {BUSY_LOAD} when the run started, see below): "
            "other processes shared the CPU, so every figure is lower and noisier than on an idle machine, "
            "and multi-threaded engines (PyTorch's OpenMP threads above all) suffer most. Re-run "
            "`make bench` on an idle machine for figures to quote.",
            "",
        ]
    parts += ["## Machine", ""]
    parts += [f"- **{k}**: {v}" for k, v in machine] + [""]
    for title, tables in sections:
        parts += [f"## {title}", ""]
        for t in tables:
            parts += [markdown_table(t), ""]
    parts += [
        "## Reproduce",
        "",
        "```sh",
        "make bench            # builds mlxgp, prepares the model folders, runs every section",
        ".venv/bin/python bench/bench.py --help   # options: sections, repeats, new tokens, output",
        "```",
        "",
        "The model folders are made once in `.cache/models/` (offline) by bench/prepare_models.py: "
        "`smollm2-135m-hf-f32` (transformers loads the default GGUF dequantized to fp32 and saves it) and "
        "`smollm2-135m-mlx-q4` (mlx-lm's `convert` quantizes that folder). "
        f"This run took {wall_s / 60:.1f} minutes. Close other work first: the machine's load average is "
        "recorded above because background load skews every figure.",
        "",
    ]
    return "\n".join(parts)
