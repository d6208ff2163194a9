"""`mlxgp generate --chat` builds the same prompt ids as transformers' apply_chat_template."""
import pytest


@pytest.mark.parametrize("system", [None, "You are terse."])
@pytest.mark.parametrize("prompt", ["What is the capital of France?", "Écris un haïku 🌊\nsur la mer."])
def test_chat_prompt_ids_match_apply_chat_template(run_mlxgp_json, hf_default, default_gguf, prompt, system):
    _, tok = hf_default
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    expected = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(expected, dict) or hasattr(expected, "input_ids"):
        expected = expected["input_ids"]
    args = ["generate", "--model", default_gguf, "--chat", "--prompt", prompt, "--max-new-tokens", "1"]
    if system:
        args += ["--system", system]
    out = run_mlxgp_json(*args)
    assert out["prompt_token_ids"] == list(expected)


def test_system_without_chat_is_rejected(run_mlxgp, default_gguf):
    proc = run_mlxgp("generate", "--model", default_gguf, "--prompt", "hi", "--system", "x", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "[cli] --system needs --chat"
