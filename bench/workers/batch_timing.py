"""Bookkeeping shared by the batched-generation workers (bench/sections/batching.py): step time stamps
and the one JSON line they print.

Layout: {"requests": [{"token_ids": [...]}, ...], "stats": {"requests", "generated_tokens", "seconds",
"decode_seconds"}}. seconds = the whole batched generate call (prefill included, model loading excluded);
decode_seconds = from the moment every request has its first new token to the last new token, the time
of the (new tokens - requests) decode tokens, as the section computes it for `mlxgp --prompts-file`."""
import json
import sys
import time


class StepClock:
    """Stamps when each request's tokens arrive; request i's k-th token is stamped by tick({i: n})."""

    def __init__(self, requests: int) -> None:
        self.counts = [0] * requests
        self.first_all = None  # every request has its first token
        self.last = None
        self.start = 0.0

    def begin(self) -> None:
        self.start = time.perf_counter()

    def tick(self, rows) -> None:
        """rows: the request indices that just received one token each."""
        now = time.perf_counter()
        for r in rows:
            self.counts[r] += 1
        if self.first_all is None and all(self.counts):
            self.first_all = now
        self.last = now

    def stats(self, seconds: float) -> dict:
        if self.first_all is None or self.last is None:
            raise RuntimeError("some request generated no token")
        return {"requests": len(self.counts), "generated_tokens": sum(self.counts), "seconds": seconds,
                "decode_seconds": self.last - self.first_all}


def emit(token_ids: list[list[int]], stats: dict, **extra) -> None:
    json.dump({"requests": [{"token_ids": t} for t in token_ids], "stats": stats, **extra}, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


def read_requests(path: str) -> list[list[int]]:
    """The prompts of a requests.jsonl file (the `mlxgp --prompts-file` layout, input_ids lines)."""
    with open(path) as f:
        return [json.loads(line)["input_ids"] for line in f if line.strip()]
