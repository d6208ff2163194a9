"""What this machine's CPU runs: `--int8-activations` (llama.cpp's int8 arithmetic) needs AVX-512 VNNI
(src/kernels/q8_block.h) and is refused in one line elsewhere (test_int8_activations.py::
test_int8_activations_need_vnni). The tests of that arithmetic run where it exists and are skipped, naming why,
where it does not."""
from pathlib import Path

import pytest


def has_avx512_vnni() -> bool:
    try:
        return "avx512_vnni" in Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: no x86-64 AVX-512 here
        return False


VNNI = has_avx512_vnni()
needs_vnni = pytest.mark.skipif(not VNNI, reason="--int8-activations needs an AVX-512 VNNI CPU (refused on this one: "
                                                 "test_int8_activations_need_vnni)")
