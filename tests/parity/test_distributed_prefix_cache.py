"""`mlxgp serve --tensor-parallel --prompt-cache-bytes B`: every rank keeps its own prompt cache of its share
of the KV heads and must make the same decisions (a rank that reused a prefix another rank prefills would
pair its forwards' collectives with the wrong shapes). The default model's 3 KV heads split 2 + 1 over two
ranks, so ranks that counted their own bytes would evict at different times; a budget that evicts while a
chat goes on checks that they count alike. The reference is a one-process server without a prompt cache."""
import concurrent.futures as cf
import json
import os
import signal
import subprocess

from ring_ports import free_ports
from test_distributed import LAUNCH, _post, _serve

QUESTIONS = ["What is the capital of France?", "And of Italy?", "Which of the two is larger?"]


def _metrics(port):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as r:
        text = r.read().decode()
    return {l.split()[0][len("mlxgp_prompt_cache_"):]: float(l.split()[1]) for l in text.splitlines()
            if l.startswith("mlxgp_prompt_cache_")}


def test_tensor_parallel_ranks_reuse_and_evict_alike(default_gguf, mlxgp_bin):
    args = ["serve", "--model", default_gguf, "--dtype", "float32", "--port", 0]
    one, one_port, _ = _serve([str(mlxgp_bin), *map(str, args), "--prompt-cache-bytes", "0"])
    tp, tp_port, tp_log = _serve([str(LAUNCH), "-n", "2", "--backend", "ring", "--starting-port",
                                  str(free_ports(3)), "--", str(mlxgp_bin), *map(str, args),
                                  "--prompt-cache-bytes", "3M", "--tensor-parallel"])

    def conversation(port):
        replies, history = [], []
        for turn, question in enumerate(QUESTIONS):
            history.append({"role": "user", "content": question})
            body = {"messages": history, "max_tokens": 24, "temperature": 0}
            reply = json.loads(_post(port, "/v1/chat/completions", body, timeout=120))["choices"][0]["message"]["content"]
            replies.append(reply)
            history.append({"role": "assistant", "content": reply})
            if turn == 0:
                # Other requests push the first turn out of a 3 MiB cache (46 KB a token). Ranks that counted
                # their own share (2/3 and 1/3 of the bytes) would drop it after the third and never.
                for i in range(4):
                    body = {"prompt": f"Request number {i}: tell me about the number {i * 7}.", "max_tokens": 8,
                            "temperature": 0}
                    replies.append(json.loads(_post(port, "/v1/completions", body, timeout=120))["choices"][0]["text"])
        return replies

    # Ranks out of step wait for each other for ever (and a waiting request is kept alive): a deadline.
    pool = cf.ThreadPoolExecutor(1)
    try:
        a = conversation(one_port)
        b = pool.submit(conversation, tp_port).result(timeout=300)
        assert tp.poll() is None, "".join(tp_log)
        m = _metrics(tp_port)
    finally:
        for p in (one, tp):
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)
        pool.shutdown(wait=False)
    print(f"prompt cache under tensor parallelism: {m}")
    assert a == b
    assert m["evictions_total"] > 0 and m["hits_total"] >= 1
    assert 0 < m["bytes"] <= m["max_bytes"] == 3 << 20
