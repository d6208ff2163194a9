"""The seed README's examples through the Python package, each against the reference in the same test:
basic usage, beam search and constraints, speculative decoding, training (persona steering with the
documented spellings: test_doc_examples.py)."""
import torch

PROMPT = "The capital of France is"


def hf_greedy(hf_default, ids, n, **kw):
    model, _ = hf_default
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, pad_token_id=0, **kw)
    return out[0, len(ids):].tolist()


def test_basic_usage_matches_transformers_greedy(mgp, default_model_f32, hf_default):
    model, tokenizer = default_model_f32
    cfg = mgp.GenerationConfig(max_tokens=24)
    out = mgp.generate(model, tokenizer, PROMPT, cfg)
    assert out["text"] and out["finish_reason"] in ("length", "eos")
    assert out["decode_tokens_per_s"] > 0 and out["prompt_tokens"] == len(out["prompt_token_ids"])
    ids = tokenizer.encode(PROMPT)
    assert out["prompt_token_ids"] == ids == hf_default[1](PROMPT)["input_ids"]
    ref = hf_greedy(hf_default, ids, 24)
    assert out["tokens"] == ref[:len(out["tokens"])], (out["tokens"], ref)
    assert out["text"] == hf_default[1].decode(out["tokens"], skip_special_tokens=True)


def test_basic_sampling_is_reproducible_and_streams(mgp, default_model):
    model, tokenizer = default_model
    cfg = mgp.GenerationConfig(max_tokens=20, temperature=0.7, top_p=0.95, seed=17, do_sample=True)
    pieces = []
    a = mgp.generate(model, tokenizer, PROMPT, cfg, callback=lambda t, s: pieces.append((t, s)))
    b = mgp.generate(model, tokenizer, PROMPT, cfg)
    c = mgp.generate(model, tokenizer, PROMPT, cfg.copy(seed=18))
    assert a["tokens"] == b["tokens"] and a["text"] == b["text"]
    assert [t for t, _ in pieces] == a["tokens"]
    assert "".join(s for _, s in pieces) == a["text"]
    assert a["tokens"] != c["tokens"]  # the seed is used


def test_beam_search_and_constraints(mgp, default_model_f32, hf_default):
    model, tokenizer = default_model_f32
    ids = tokenizer.encode(PROMPT)
    out = mgp.generate(model, tokenizer, PROMPT, mgp.GenerationConfig(max_tokens=12, num_beams=3,
                                                                      num_return_sequences=2))
    assert len(out["sequences"]) == 2 and all("score" in s for s in out["sequences"])
    assert out["sequences"][0]["score"] >= out["sequences"][1]["score"]
    hf_model, _ = hf_default
    with torch.no_grad():
        ref = hf_model.generate(torch.tensor([ids]), max_new_tokens=12, num_beams=3, num_return_sequences=2,
                                do_sample=False, pad_token_id=0, output_scores=True, return_dict_in_generate=True)
    for seq, row, score in zip(out["sequences"], ref.sequences, ref.sequences_scores):
        assert seq["token_ids"] == row[len(ids):].tolist()[:len(seq["token_ids"])]
        assert abs(seq["score"] - float(score)) < 1e-3

    # Constraint: the word " Paris" (its token ids) must appear.
    word = tokenizer.encode(" Berlin", add_special_tokens=False)
    out = mgp.generate(model, tokenizer, PROMPT, max_tokens=12, num_beams=3, force_words_ids=[word])
    toks = out["tokens"]
    assert any(toks[i:i + len(word)] == word for i in range(len(toks))), (word, toks)


def test_speculative_decoding_is_exact_for_greedy(mgp, default_model, default_gguf):
    model, tokenizer = default_model
    plain = mgp.generate(model, tokenizer, PROMPT, max_tokens=24)
    cfg = mgp.GenerationConfig(max_tokens=24, use_speculative=True, draft_model_id=str(default_gguf),
                               num_draft_tokens=3)
    spec = mgp.generate(model, tokenizer, PROMPT, cfg)
    # Speculative decoding never changes greedy output; the draft being the target itself, every
    # drafted token is accepted.
    assert spec["tokens"] == plain["tokens"]
    sp = spec["stats"]["speculative"]
    assert sp["drafted_tokens"] > 0 and sp["accepted_tokens"] == sp["drafted_tokens"]


def test_training_step_matches_torch_adamw(mgp, tiny_llama):
    """train_step with the project's AdamW on a tiny model against torch.optim.AdamW on the same model."""
    import mlx.core as mx
    import numpy as np
    import transformers

    hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    hf.train()
    model, _ = mgp.load(str(tiny_llama))
    g = np.random.default_rng(0)
    batches = [g.integers(3, 500, size=(2, 12)) for _ in range(3)]
    opt = mgp.AdamW(learning_rate=1e-3, weight_decay=0.01)
    cfg = mgp.TrainingConfig()
    topt = torch.optim.AdamW(hf.parameters(), lr=1e-3, weight_decay=0.01)
    for b in batches:
        r = mgp.train_step(model, mx.array(b), opt, cfg)
        topt.zero_grad()
        t = torch.tensor(b)
        loss = hf(input_ids=t, labels=t).loss
        loss.backward()
        topt.step()
        assert abs(r["loss"] - loss.item()) < 1e-4, (r["loss"], loss.item())
        assert r["n_tokens"] == 2 * 11 and not r["skipped"]
    assert opt.steps == 3
    params = model.parameters()
    worst = 0.0
    for name, p in hf.named_parameters():
        worst = max(worst, float(np.abs(np.array(params[name]) - p.detach().numpy()).max()))
    assert worst < 1e-4, worst
    # loss_forward / xent_loss agree with torch on the trained model
    t = torch.tensor(batches[0])
    with torch.no_grad():
        ref = hf(input_ids=t, labels=t).loss.item()
    loss, n = mgp.loss_forward(model, mx.array(batches[0]))
    assert abs(loss.item() - ref) < 1e-4 and n.item() == 22
    logits = model(mx.array(batches[0]))
    l2, _ = mgp.xent_loss(logits[:, :-1].reshape(-1, logits.shape[-1]), mx.array(batches[0][:, 1:].reshape(-1)))
    assert abs(l2.item() - ref) < 1e-4
