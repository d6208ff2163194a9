"""`mlxgp serve --int8-activations`: llama.cpp's arithmetic for the GGUF's Q4_1 / Q8_0 blocks in the server.
Requests decoded together in one batch each give exactly the tokens `mlxgp generate --int8-activations`
gives alone (the int8 kernels' results do not depend on the batch), and those differ from the float32
mode's (the flag reaches the model). Bad combinations stop the server at start with one [load] line."""
import concurrent.futures as cf
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from test_server import BIN, GGUF, Server, cli_generate, scrape

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parity"))
from cpu_features import needs_vnni  # noqa: E402

# Ten at once: the batch runs the 8-row kernel and the one-row kernel side by side.
PROMPTS = ["The capital of France is", "Write a haiku about rain.", "List three prime numbers:",
           "Once upon a time, in a small village,", "The best way to learn a language is", "Water boils at",
           "My favourite season is", "A good breakfast has", "The moon is", "Trains are useful because"]


@pytest.fixture(scope="module")
def server():
    s = Server("--int8-activations")
    yield s
    assert s.stop() == 0, "".join(s.log)


def steps_over_rows(server, rows=8):
    samples, _ = scrape(server)
    return samples[("mlxgp_batch_rows_count", ())] - samples[("mlxgp_batch_rows_bucket", (("le", str(rows)),))]


def steps_over_eight_rows(server):
    return steps_over_rows(server, 8)


@needs_vnni
def test_batched_requests_equal_generate_alone(server):
    client = openai.OpenAI(base_url=server.url("/v1"), api_key="none", max_retries=0, timeout=300)
    refs = [cli_generate("--prompt", p, "--max-new-tokens", 32, "--int8-activations")["sequences"][0]["text"]
            for p in PROMPTS]
    before = steps_over_eight_rows(server)
    with cf.ThreadPoolExecutor(len(PROMPTS)) as pool:
        got = list(pool.map(lambda p: client.completions.create(model=server.model, prompt=p, max_tokens=32)
                            .choices[0].text, PROMPTS))
    assert got == refs
    assert steps_over_eight_rows(server) > before  # some steps held 9 or 10 rows
    plain = [cli_generate("--prompt", p, "--max-new-tokens", 32)["sequences"][0]["text"] for p in PROMPTS]
    assert plain != refs


@needs_vnni
def test_batched_float16_kv_requests_equal_generate_alone(server):
    """Requests with `kv_cache_dtype` float16 (the cache stores halves, as llama.cpp's default) share a batch
    (the fused decode step writes each row's halves) and each gives `mlxgp generate --kv-cache-dtype` alone;
    a bad name is a 400 naming the field."""
    client = openai.OpenAI(base_url=server.url("/v1"), api_key="none", max_retries=0, timeout=300)
    prompts = PROMPTS[:5]
    refs = [cli_generate("--prompt", p, "--max-new-tokens", 40, "--int8-activations", "--kv-cache-dtype",
                         "float16")["sequences"][0]["text"] for p in prompts]
    before = steps_over_rows(server, 1)
    with cf.ThreadPoolExecutor(len(prompts)) as pool:
        got = list(pool.map(lambda p: client.completions.create(
            model=server.model, prompt=p, max_tokens=40,
            extra_body={"kv_cache_dtype": "float16"}).choices[0].text, prompts))
    assert got == refs
    assert steps_over_rows(server, 1) > before  # the requests shared steps
    with pytest.raises(openai.BadRequestError, match="kv_cache_dtype"):
        client.completions.create(model=server.model, prompt="Hi", max_tokens=2, extra_body={"kv_cache_dtype": "fp8"})


def test_server_kv_cache_dtype_is_the_default_of_requests():
    """`serve --kv-cache-dtype float16`: requests naming no dtype get halves (the CLI's --kv-cache-dtype tokens),
    one asking for kv_bits gets its quantized cache, and a bad name stops the server at start."""
    s = Server("--kv-cache-dtype", "float16")
    try:
        client = openai.OpenAI(base_url=s.url("/v1"), api_key="none", max_retries=0, timeout=300)
        prompts = PROMPTS[:3]
        refs = [cli_generate("--prompt", p, "--max-new-tokens", 40, "--kv-cache-dtype", "float16")["sequences"][0]["text"]
                for p in prompts]
        with cf.ThreadPoolExecutor(len(prompts)) as pool:
            got = list(pool.map(lambda p: client.completions.create(model=s.model, prompt=p, max_tokens=40)
                                .choices[0].text, prompts))
        assert got == refs
        quantized = client.completions.create(model=s.model, prompt=prompts[0], max_tokens=40,
                                              extra_body={"kv_bits": 8}).choices[0].text
        assert quantized == cli_generate("--prompt", prompts[0], "--max-new-tokens", 40, "--kv-bits",
                                         8)["sequences"][0]["text"]
    finally:
        assert s.stop() == 0, "".join(s.log)
    out = subprocess.run([str(BIN), "serve", "--model", str(GGUF), "--kv-cache-dtype", "fp8"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == "[serve] --kv-cache-dtype must be float16, bfloat16 or float32, got 'fp8'"


def test_refused_at_start():
    out = subprocess.run([str(BIN), "serve", "--model", str(GGUF), "--int8-activations", "--dtype", "float32"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == ("[load] int8 activations and a dtype exclude each other: the dtype dequantizes "
                                  "the blocks they apply to")


@needs_vnni
def test_batched_quantized_kv_requests_equal_generate_alone(server):
    """Requests with quantized KV caches (`kv_bits`, an HF GenerationConfig field) share a batch and run the
    fused decode step over the quantized rows (left-padded, each row from its own first key); each gives
    the tokens `mlxgp generate --kv-bits` gives alone."""
    client = openai.OpenAI(base_url=server.url("/v1"), api_key="none", max_retries=0, timeout=300)
    for bits, group in ((8, 64), (4, 32)):
        prompts = PROMPTS[:5]
        refs = [cli_generate("--prompt", p, "--max-new-tokens", 40, "--int8-activations", "--kv-bits", bits,
                             "--kv-group-size", group)["sequences"][0]["text"] for p in prompts]
        before = steps_over_rows(server, 1)
        with cf.ThreadPoolExecutor(len(prompts)) as pool:
            got = list(pool.map(lambda p: client.completions.create(
                model=server.model, prompt=p, max_tokens=40,
                extra_body={"kv_bits": bits, "kv_group_size": group}).choices[0].text, prompts))
        assert got == refs, (bits, group)
        assert steps_over_rows(server, 1) > before  # the requests shared steps
