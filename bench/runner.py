"""Runs one engine invocation in its own process and collects what it reports.

Every measured run is a fresh process, so a process's max RSS (from wait4's rusage, the same figure
for a C++ binary and a Python interpreter) belongs to that run alone. The command prints one JSON
object as the last line of its stdout; for generation it has the `mlxgp generate --json` layout:
{"sequences": [{"token_ids"}], "stats": {prompt_tokens, generated_tokens, prefill_tokens_per_s,
decode_tokens_per_s, peak_memory_bytes}}.
"""
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field


class RunError(RuntimeError):
    pass


@dataclass
class Run:
    doc: dict  # the JSON object the process printed
    max_rss_bytes: int
    wall_s: float

    @property
    def stats(self) -> dict:
        return self.doc.get("stats") or {}

    @property
    def token_ids(self) -> list[int]:
        return self.doc["sequences"][0]["token_ids"]


@dataclass
class Measurement:
    """The median over repeated runs of one engine on one configuration."""
    runs: list[Run] = field(default_factory=list)
    error: str | None = None

    def median(self, key: str) -> float | None:
        if key == "max_rss_bytes":
            values = [r.max_rss_bytes for r in self.runs]
        else:
            values = [r.stats.get(key) for r in self.runs]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    @property
    def token_ids(self) -> list[int]:
        return self.runs[0].token_ids if self.runs else []


def run_json(cmd: list[str], timeout_s: float, env: dict | None = None) -> Run:
    """Runs cmd, waits with wait4 for its rusage, and parses the JSON object it printed last."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
        status, rusage = _wait4(proc, timeout_s)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if status is None:
        raise RunError(f"timed out after {timeout_s:.0f} s")
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; tell Popen
    if proc.returncode != 0:
        last = stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        raise RunError(f"exit {proc.returncode}: {last[0][:300]}")
    try:
        doc = json.loads(stdout.strip().splitlines()[-1])
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except (IndexError, ValueError) as e:
        raise RunError(f"unexpected output ({e}): {stdout[:200]!r}") from None
    return Run(doc=doc, max_rss_bytes=rusage.ru_maxrss * 1024, wall_s=wall)  # ru_maxrss is in KiB


def _wait4(proc: subprocess.Popen, timeout_s: float):
    """(wait status, rusage) of proc; (None, None) after killing its process group on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            return status, rusage
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: nothing else is in that group
            os.wait4(proc.pid, 0)
            return None, None
        time.sleep(0.02)
