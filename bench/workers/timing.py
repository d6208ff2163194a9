"""Token-time bookkeeping shared by the Python workers, so every engine splits prefill and decode the
same way the mlxgp CLI reports them: prefill = prompt tokens / time to the first generated token;
decode = the remaining generated tokens / the time from the first to the last generated token."""
import json
import sys
import time


class TokenClock:
    def __init__(self) -> None:
        self.start = 0.0
        self.stamps: list[float] = []

    def begin(self) -> None:
        self.start = time.perf_counter()
        self.stamps.clear()

    def tick(self, n: int = 1) -> None:
        now = time.perf_counter()
        self.stamps.extend([now] * n)

    def stats(self, prompt_tokens: int, peak_memory_bytes: int | None) -> dict:
        n = len(self.stamps)
        if n == 0:
            raise RuntimeError("no token was generated")
        ttft = self.stamps[0] - self.start
        decode_s = self.stamps[-1] - self.stamps[0]
        return {
            "prompt_tokens": prompt_tokens,
            "generated_tokens": n,
            "prefill_tokens_per_s": prompt_tokens / ttft,
            "decode_tokens_per_s": (n - 1) / decode_s if n > 1 and decode_s > 0 else None,
            "peak_memory_bytes": peak_memory_bytes,
        }


def emit(stats: dict, token_ids: list[int], **extra) -> None:
    """The worker's only stdout line, in the mlxgp --json layout the driver parses (plus extra keys)."""
    json.dump({"sequences": [{"token_ids": token_ids}], "stats": stats, **extra}, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
