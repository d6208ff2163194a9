"""python -m mlx_gen_parity.tests.parity_hf --hf-model DIR --mlx-model DIR --prompt 'hello'

One prompt: per mode (greedy, processors, beams) the tokens mlxgp generates from --mlx-model against
transformers on --hf-model (tokens identical / total, max |logit diff|, finish reasons equal), then the
decode speed of mlxgp C++, mlxgp Python, mlx-lm and transformers (greedy)."""
from . import _common as C


def main(argv=None):
    a, mgp, model, tokenizer, ids, hf = C.setup_one_prompt(__doc__, argv)
    print(f"prompt: {a.prompt!r} ({len(ids)} tokens), max_tokens {a.max_tokens}")
    print(f"mlxgp: {a.mlx_model}   transformers: {a.hf_model}\n")
    print("parity (mlxgp vs transformers)")
    C.table(["mode", "tokens identical", "max |logit diff|", "finish reasons equal"],
            C.parity_rows(mgp, model, tokenizer, hf, ids, a.max_tokens))
    print()
    speed_table(mgp, model, tokenizer, hf, ids, a)


def speed_table(mgp, model, tokenizer, hf, ids, a):
    rows = []
    ref, _, dt, _ = C.hf_generate(hf, ids, a.max_tokens, {}, C.eos_ids(model))
    rows.append(["transformers", len(ref) / dt if dt else None, "reference"])
    toks, _, stats, _ = C.mgp_generate(mgp, model, tokenizer, ids, a.max_tokens, {})
    rows.append(["mlxgp Python", stats["decode_tokens_per_s"], "%d/%d" % C.compare(toks, ref)[:2]])
    binary = C.find_mlxgp_bin(a.mlxgp_bin)
    if binary:
        try:
            toks, stats = C.cli_generate(binary, a.mlx_model, ids, a.max_tokens, {})
            rows.append(["mlxgp C++", stats["decode_tokens_per_s"], "%d/%d" % C.compare(toks, ref)[:2]])
        except RuntimeError as e:
            rows.append(["mlxgp C++", None, str(e)[:60]])
    else:
        rows.append(["mlxgp C++", None, "mlxgp executable not found"])
    try:
        toks, tps = C.mlxlm_generate(a.mlx_model, ids, a.max_tokens)
        rows.append(["mlx-lm", tps, "%d/%d" % C.compare(toks, ref)[:2]])
    except Exception as e:  # mlx-lm cannot load every folder mlxgp can (GGUF files)
        rows.append(["mlx-lm", None, f"{type(e).__name__}: {str(e)[:50]}"])
    print("speed (greedy decode)")
    C.table(["engine", "tokens/s", "tokens identical vs transformers"], rows)


if __name__ == "__main__":
    main()
