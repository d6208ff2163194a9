"""Reference runner for test_beam_legacy.py, executed with PYTHONPATH=.cache/hf-legacy so that it imports
transformers 4.56.2 (group beam search and constrained beam search were removed after it) with the
venv's torch. Reads {"model": folder, "cases": [{"prompt": ids, "config": {...}}]} on stdin, writes one
JSON line: per case the returned sequences (generated part), sequences_scores and beam_indices; with
output_logprobs in a case's config (mlxgp's field, not passed on), also per returned sequence and step the
chosen token's processed score, raw logit and log-probability in every beam row ("steps": [t][row][3]),
from transformers' `scores` and `logits`."""
import json
import sys

import torch
import transformers


def main():
    req = json.load(sys.stdin)
    assert transformers.__version__ == "4.56.2", transformers.__version__
    torch.set_num_threads(1)
    model = transformers.AutoModelForCausalLM.from_pretrained(req["model"], torch_dtype=torch.float32).eval()
    out = []
    for case in req["cases"]:
        prompt, cfg = case["prompt"], dict(case["config"])
        steps = cfg.pop("output_logprobs", False)
        cfg.pop("output_scores", None)
        cfg.pop("output_logits", None)
        with torch.no_grad():
            o = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                               do_sample=False, trust_remote_code=True, return_dict_in_generate=True,
                               output_scores=True, output_logits=steps, **cfg)
        entry = {"sequences": o.sequences[:, len(prompt):].tolist(), "scores": o.sequences_scores.tolist(),
                 "beam_indices": o.beam_indices.tolist() if o.beam_indices is not None else None,
                 "pad": model.generation_config.pad_token_id}
        if steps:
            per_step = [torch.stack([s, l.float(), s.log_softmax(-1)], -1) for s, l in zip(o.scores, o.logits)]
            entry["steps"] = [[per_step[t][:, tok, :].tolist() for t, tok in enumerate(row[:len(per_step)])]
                              for row in entry["sequences"]]
        out.append(entry)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
