#!/usr/bin/env python3
"""make bump-version PART=patch|minor|major: rewrites VERSION, the one source of the version. CMake's
project(VERSION) and MLXGP_VERSION, the Python package (__version__, pyproject's dynamic version) all read
it at build time."""
import re
import sys
from pathlib import Path


def bump(text, part):
    m = re.fullmatch(r"\s*(\d+)\.(\d+)\.(\d+)\s*", text)
    if not m:
        raise SystemExit(f"[version] VERSION must hold X.Y.Z, got {text.strip()!r}")
    major, minor, patch = map(int, m.groups())
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    if part == "patch":
        return f"{major}.{minor}.{patch + 1}"
    raise SystemExit(f"[version] PART must be patch, minor or major, got {part!r}")


def main():
    if len(sys.argv) not in (2, 3):
        raise SystemExit("usage: bump_version.py patch|minor|major [ROOT]")
    root = Path(sys.argv[2] if len(sys.argv) == 3 else Path(__file__).resolve().parents[1])
    path = root / "VERSION"
    new = bump(path.read_text(), sys.argv[1])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new + "\n")
    tmp.replace(path)
    print(new)


if __name__ == "__main__":
    main()
