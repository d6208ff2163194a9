"""`mlxgp serve --int8-activations`: llama.cpp's arithmetic for the GGUF's Q4_1 / Q8_0 blocks in the server.
Requests decoded together in one batch each give exactly the tokens `mlxgp generate --int8-activations`
gives alone (the int8 kernels' results do not depend on the batch), and those differ from the float32
mode's (the flag reaches the model). Bad combinations stop the server at start with one [load] line."""
import concurrent.futures as cf
import subprocess

import openai
import pytest

from test_server import BIN, GGUF, Server, cli_generate, scrape

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


def test_refused_at_start():
    out = subprocess.run([str(BIN), "serve", "--model", str(GGUF), "--int8-activations", "--dtype", "float32"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == ("[load] int8 activations and a dtype exclude each other: the dtype dequantizes "
                                  "the blocks they apply to")


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
