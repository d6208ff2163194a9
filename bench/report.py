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
    load = os.getloadavg()
    return [
        ("date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")),
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} cores, no GPU used (MLX CPU backend)"),
        ("RAM", _ram_gib()),
        ("OS", _os_name()),
        ("Python packages", ", ".join(versions)),
        ("mlxgp", f"{_mlxgp_version(mlxgp_bin)}, commit {_git_commit()}, Release build"),
        ("load average at start", f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min)"),
    ]


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
            lines.append("  ".join(c.ljust(w) if j < 2 else c.rjust(w)
                                   for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(table: Table) -> str:
    out = [f"### {table.title}", "", "| " + " | ".join(table.columns) + " |",
           "|" + "|".join(" --- " if i < 2 else " ---: " for i in range(len(table.columns))) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in table.rows]
    if table.notes:
        out += [""] + [f"- {n}" for n in table.notes]
    return "\n".join(out)


def markdown_report(machine: list[tuple[str, str]], sections: list[tuple[str, list[Table]]],
                    wall_s: float) -> str:
    parts = [
        "# Performance",
        "",
        "Written by `make bench` (bench/bench.py); do not edit by hand. Figures are from one machine and one "
        "run; compare engines within a table, not across machines.",
        "",
        "## Machine",
        "",
    ]
    parts += [f"- **{k}**: {v}" for k, v in machine]
    for title, tables in sections:
        parts += ["", f"## {title}", ""]
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
