"""The machine's memory read bandwidth, for the decode bound of the cpu_speed section: the best of several
passes of np.max over a 1 GiB float32 array (far past every cache), split across 1..N threads (numpy
releases the GIL inside the reduction). Prints one JSON line {"gb_per_s": best, "by_threads": {...}}.

Usage: bandwidth_worker.py [MAX_THREADS]"""
import json
import os
import sys
import threading
import time

import numpy as np

PASSES = 5


def measure(data: np.ndarray, threads: int) -> float:
    parts = np.array_split(data, threads)
    best = 0.0
    for _ in range(PASSES):
        workers = [threading.Thread(target=np.max, args=(p,)) for p in parts]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, data.nbytes / (time.perf_counter() - start) / 1e9)
    return best


def main() -> None:
    max_threads = int(sys.argv[1]) if len(sys.argv) > 1 else (os.cpu_count() or 1)
    data = np.ones(256 << 20, dtype=np.float32)  # 1 GiB, every page touched once before timing
    by_threads = {t: round(measure(data, t), 2) for t in range(1, max_threads + 1)}
    print(json.dumps({"gb_per_s": max(by_threads.values()), "by_threads": by_threads}))


if __name__ == "__main__":
    main()
