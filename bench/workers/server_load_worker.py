"""Load generator for an OpenAI-compatible server (bench/sections/server_load.py): C asyncio clients,
each sending R streaming `/v1/completions` requests back to back; prints one JSON line with what each
request saw.

Usage: server_load_worker.py SPEC_JSON
SPEC_JSON: {"url": "http://127.0.0.1:PORT", "concurrency": C, "requests_per_client": R,
            "max_tokens": N, "prompts": [C * R strings], "timeout_s": T}
Client k's r-th request sends prompts[r * C + k]. Every request body is the same for every server:
{"prompt", "max_tokens", "temperature": 0, "stream": true, "stream_options": {"include_usage": true}}.

Output: {"wall_s", "requests": [{"client", "prompt_index", "start_s", "ttft_s", "chunk_s": [...],
"prompt_tokens", "completion_tokens", "cached_tokens", "finish_reason", "text", "status", "retries", "error"}]}.
start_s is from the start of the run; ttft_s and chunk_s (every SSE chunk that carries text) are from the
moment the request was sent, so inter-token gaps are the differences of chunk_s. Times are taken when a
line arrives from the socket, before JSON parsing.
"""
import asyncio
import json
import sys
import time

try:  # requirements.txt pins httpx2 (the openai client's transport); plain httpx has the same API
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx


# A connection the server drops before any response byte is sent again, as the openai client does (its
# default: 2 retries, backoff from 0.5 s): mlx_lm.server's listen backlog is 5 (socketserver's default),
# so a burst of 32 new connections gets some reset. TTFT still counts from the first attempt.
MAX_ATTEMPTS = 3
RETRY_BACKOFF_S = 0.5


class Dropped(Exception):
    """The server closed the connection before sending a status line."""


async def attempt(client, body: dict, rec: dict, sent: float, parts: list) -> None:
    try:
        async with client.stream("POST", "/v1/completions", json=body) as resp:
            rec["status"] = resp.status_code
            if resp.status_code != 200:
                rec["error"] = f"HTTP {resp.status_code}: {(await resp.aread())[:200]!r}"
                return
            async for line in resp.aiter_lines():
                now = time.perf_counter() - sent
                # SSE comments (mlx-lm's ": keepalive" during prefill) and blank separators carry no data.
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                doc = json.loads(payload)
                usage = doc.get("usage")
                if usage:
                    rec["prompt_tokens"] = usage.get("prompt_tokens")
                    rec["completion_tokens"] = usage.get("completion_tokens")
                    rec["cached_tokens"] = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
                for choice in doc.get("choices") or []:
                    text = choice.get("text") or ""
                    if text:
                        parts.append(text)
                        rec["chunk_s"].append(now)
                        if rec["ttft_s"] is None:
                            rec["ttft_s"] = now
                    if choice.get("finish_reason"):
                        rec["finish_reason"] = choice["finish_reason"]
    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError) as ex:
        if rec["status"] is None:
            raise Dropped(f"{type(ex).__name__}: {ex!r}") from None
        raise


async def one_request(client, spec: dict, index: int, client_id: int, t0: float) -> dict:
    body = {"prompt": spec["prompts"][index], "max_tokens": spec["max_tokens"], "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    rec = {"client": client_id, "prompt_index": index, "start_s": 0.0, "ttft_s": None, "chunk_s": [],
           "prompt_tokens": None, "completion_tokens": None, "cached_tokens": None, "finish_reason": None,
           "text": "", "status": None, "retries": 0, "error": None}
    sent = time.perf_counter()
    rec["start_s"] = sent - t0
    parts: list = []
    for n in range(MAX_ATTEMPTS):
        try:
            await attempt(client, body, rec, sent, parts)
            break
        except Dropped as ex:
            if n + 1 == MAX_ATTEMPTS:
                rec["error"] = f"dropped {MAX_ATTEMPTS} times, last: {ex}"[:300]
                break
            rec["retries"] += 1
            await asyncio.sleep(RETRY_BACKOFF_S * 2**n)
        except (httpx.HTTPError, ValueError) as ex:
            rec["error"] = f"{type(ex).__name__}: {ex!r}"[:300]
            break
    rec["text"] = "".join(parts)
    if rec["error"] is None and rec["completion_tokens"] is None:
        rec["error"] = "no usage chunk in the stream"
    return rec


async def client_loop(client, spec: dict, client_id: int, t0: float, out: list) -> None:
    c = spec["concurrency"]
    for r in range(spec["requests_per_client"]):
        out.append(await one_request(client, spec, r * c + client_id, client_id, t0))


async def main(spec: dict) -> dict:
    c = spec["concurrency"]
    # One connection per client (no pooling limit below C), no read timeout short of the whole run: a
    # slow server must show up as latency, not as client errors.
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    timeout = httpx.Timeout(spec.get("timeout_s", 900.0))
    out: list = []
    async with httpx.AsyncClient(base_url=spec["url"], limits=limits, timeout=timeout) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop(client, spec, k, t0, out) for k in range(c)))
        wall = time.perf_counter() - t0
    out.sort(key=lambda r: r["prompt_index"])
    return {"wall_s": wall, "requests": out}


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    print(json.dumps(asyncio.run(main(spec))))
