"""One greedy generation through the Python package mlx_gen_parity; prints the result as one JSON line
(the `mlxgp generate --json` layout, stats from the C++ generator, as the CLI reports them).

Usage: mlxgp_python_worker.py MODEL IDS(comma-separated) MAX_NEW_TOKENS"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import mlx_gen_parity as mgp  # noqa: E402


def main() -> None:
    model_path, ids_arg, max_new = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ids = [int(t) for t in ids_arg.split(",")]
    model, tokenizer = mgp.load(model_path)
    # Same settings as `mlxgp generate --max-new-tokens N --ignore-eos` (an empty EOS list).
    out = mgp.generate(model, tokenizer, ids, max_tokens=max_new, eos_token_id=[])
    print(json.dumps({"prompt_token_ids": out["prompt_token_ids"],
                      "sequences": [{"token_ids": s["token_ids"]} for s in out["sequences"]],
                      "stats": out["stats"]}))


if __name__ == "__main__":
    main()
