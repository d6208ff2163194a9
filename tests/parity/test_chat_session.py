"""`mlxgp chat`: a multi-turn conversation piped into the CLI gives, turn by turn, the replies of
transformers greedy `generate()` on `apply_chat_template(conversation so far, add_generation_prompt=True)`
(run live here), while prefilling only the part of each turn's prompt that the KV cache does not hold;
`/reset` starts the conversation over."""
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

MAX_NEW = 32
NEAR_TIE = 1e-4  # as in test_generate_parity: a divergence is tolerated only at a reference near-tie
TURNS = [
    "What is the capital of France?",
    "And what is it famous for? Answer in one sentence.",
    "Écris un haïku sur la mer 🌊",
]
STATS = re.compile(r"^\[chat\] turn (\d+): prompt (\d+) tokens \((\d+) reused, (\d+) prefilled, [^)]*\), "
                   r"generated (\d+) tokens .*finish_reason (\w+)")


def chat_ids(tok, messages):
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


def reference_conversation(model, tok, turns, system):
    """Each turn: (prompt ids, reply ids, reply text) from transformers, feeding its own replies back."""
    import torch

    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    messages = [{"role": "system", "content": system}] if system else []
    out = []
    for user in turns:
        messages.append({"role": "user", "content": user})
        ids = chat_ids(tok, messages)
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=MAX_NEW,
                                 attention_mask=torch.ones(1, len(ids), dtype=torch.long))
        reply = gen[0, len(ids):].tolist()
        # The reply text as mlxgp keeps it: a final special EOS ends the turn but is not text.
        text = tok.decode(reply[:-1] if reply and reply[-1] in eos else reply)
        messages.append({"role": "assistant", "content": text})
        out.append((ids, reply, text, bool(reply) and reply[-1] in eos))
    return out


def top2_gap(model, ids):
    import torch

    with torch.no_grad():
        top = model(torch.tensor([ids])).logits[0, -1].float().topk(2).values
    return float(top[0] - top[1])


def common_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def fork_at_near_tie(model, tok, ref, stdout):
    """Called when our replies differ from the reference's: passes only if the first differing token is a
    reference near-tie, after which the two conversations legitimately fork (nothing after it is compared)."""
    done = ""
    for k, (ids, reply, text, _) in enumerate(ref):
        ours = stdout[len(done):]
        if ours.startswith(text + "\n"):
            done += text + "\n"
            continue
        i = 0  # first reply token whose text ours does not continue with
        while i < len(reply) and ours.startswith(tok.decode(reply[:i + 1])):
            i += 1
        gap = top2_gap(model, ids + reply[:i])
        assert gap < NEAR_TIE, (f"turn {k + 1} differs at token {i} (reference top-2 gap {gap:.3g}):\n"
                                f"ours: {ours!r}\nref:  {text!r}")
        print(f"turn {k + 1} forks at a reference near-tie (gap {gap:.2g}); later turns are not compared")
        return
    assert stdout == done, f"unexpected output after the replies: {stdout[len(done):]!r}"


# The default-system conversation runs 3 turns and /reset; the explicit system prompt 2 turns (runtime).
@pytest.mark.parametrize("system,turns", [(None, TURNS), ("You are a terse assistant.", TURNS[:2])])
def test_chat_matches_generate_on_the_whole_conversation(hf_default, default_gguf, run_mlxgp, system, turns):
    model, tok = hf_default
    # The conversation, then /reset and its first message again: the same first reply, prefilled in full.
    stdin = "\n".join(turns + ["/reset", turns[0], "/exit", "never sent"]) + "\n"
    args = ["chat", "--model", default_gguf, "--dtype", "float32", "--max-new-tokens", MAX_NEW]
    if system:
        args += ["--system", system]
    with ThreadPoolExecutor(max_workers=1) as pool:  # overlap mlxgp with the reference
        ours = pool.submit(run_mlxgp, *args, input=stdin)
        ref = reference_conversation(model, tok, turns, system)
        proc = ours.result()

    stats = [STATS.match(line) for line in proc.stderr.splitlines() if line.startswith("[chat] turn")]
    assert all(stats), proc.stderr
    assert [int(m[1]) for m in stats] == list(range(1, len(turns) + 1)) + [1], proc.stderr
    assert "[chat] conversation reset" in proc.stderr

    # Replies stream to stdout, each followed by a newline; the reference's replies, same order.
    expected_stdout = "".join(text + "\n" for _, _, text, _ in ref + ref[:1])
    if proc.stdout != expected_stdout:
        fork_at_near_tie(model, tok, ref, proc.stdout)

    prev_cached = []
    for k, ((ids, reply, _, ended_eos), m) in enumerate(zip(ref + ref[:1], stats)):
        prompt, reused, prefilled, generated = int(m[2]), int(m[3]), int(m[4]), int(m[5])
        assert prompt == len(ids) and generated == len(reply)
        assert m[6] == ("eos" if ended_eos else "length")
        assert prefilled == prompt - reused
        if 0 < k < len(turns):
            # Only the suffix the cache lacks is prefilled: the cache holds the previous prompt and reply
            # (the reply's last token only when the step after it was already computed, i.e. at EOS).
            assert reused == common_prefix(prev_cached, ids), (k, reused)
            assert reused >= len(ref[k - 1][0]), "the previous turn's prompt must be reused"
        else:
            assert reused == 0  # first turn, and the first turn after /reset
        # Generator: after the last token the next step is already queued (and cached) unless that
        # token used up the budget.
        prev_cached = ids + (reply if ended_eos and len(reply) < MAX_NEW else reply[:-1])
    assert proc.returncode == 0, proc.stderr


def test_chat_rejects_bad_flags_before_loading(run_mlxgp, default_gguf):
    proc = run_mlxgp("chat", "--model", default_gguf, "--top-p", "1.5", check=False, input="hi\n")
    assert proc.returncode == 2
    assert proc.stderr.startswith("[config] ") and proc.stdout == ""
