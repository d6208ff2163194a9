"""`mlxgp serve` on llama.cpp's IQ4_XS mixture of the default model (IQ4_XS and IQ4_NL blocks kept as stored,
made by llama.cpp's own quantizer, tests/refs/gguf_quant.py): requests decoded together in one batch each
give exactly the tokens `mlxgp generate` gives alone on that file."""
import concurrent.futures as cf
import sys

import openai
import pytest

from test_server import GGUF, ROOT, Server, cli_generate

sys.path.insert(0, str(ROOT))
from tests.refs import gguf_quant  # noqa: E402

PROMPTS = ["The capital of France is", "Write a haiku about rain.", "List three prime numbers:", "Water boils at"]


@pytest.fixture(scope="module")
def iq4_file():
    path = gguf_quant.cached_quantized(GGUF, "IQ4_XS")
    assert {"IQ4_XS", "IQ4_NL"} <= set(gguf_quant.tensor_types(path).values())
    return path


def test_batched_iq4_requests_equal_generate_alone(iq4_file):
    refs = [cli_generate("--prompt", p, "--max-new-tokens", 24, model=iq4_file)["sequences"][0]["text"]
            for p in PROMPTS]
    server = Server(model=iq4_file)
    try:
        client = openai.OpenAI(base_url=server.url("/v1"), api_key="none", max_retries=0, timeout=300)
        with cf.ThreadPoolExecutor(len(PROMPTS)) as pool:
            got = list(pool.map(lambda p: client.completions.create(model=server.model, prompt=p, max_tokens=24)
                                .choices[0].text, PROMPTS))
    finally:
        assert server.stop() == 0, "".join(server.log)
    assert server.model == iq4_file.stem
    assert got == refs
    assert all(len(t) > 20 for t in got)
