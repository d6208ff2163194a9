"""The prompt of a tool conversation, live against transformers: `mlxgp serve`'s /tokenize with OpenAI
`messages` and `tools` gives the token ids of transformers' tokenizer.apply_chat_template(messages,
tools=tools, add_generation_prompt=True, tokenize=True), for real tokenizers and their own chat templates
(scripts/fetch_tokenizers.sh: Qwen2.5 and Qwen3 render Hermes tools, Mistral-Nemo its [AVAILABLE_TOOLS],
Llama 3 ignores them). The server gets each call's `arguments` as the JSON string OpenAI clients send; the
reference gets the object vLLM parses it into before templating.

Each tokenizer is served with a tiny random model (1 layer, 8 features) written here, so the server loads
the real tokenizer.json and tokenizer_config.json (chat template, special tokens) as for any HF folder."""
import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import save_file

from test_server import CACHE, Server, post

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city — °C",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
ARGS = [{"city": "Paris", "days": 2, "x": [1.5, None, True, "é"]}, {}]


def conversation(arguments):
    """A tool definition's turn: the question, the assistant's two calls, their results."""
    calls = [{"id": f"call{i}ABCD", "type": "function",  # 9 characters: Mistral's template insists
              "function": {"name": name, "arguments": arguments(a)}}
             for i, (name, a) in enumerate(zip(["get_weather", "get_time"], ARGS))]
    return [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Paris for two days, and the time?"},
            {"role": "assistant", "content": "", "tool_calls": calls},
            {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"temp": 21}'},
            {"role": "tool", "tool_call_id": calls[1]["id"], "content": "12:00"}]


def tiny_model(name, folder):
    """A 1-layer llama over the tokenizer's vocabulary, with its tokenizer files."""
    src = CACHE / "tokenizers" / name
    assert (src / "tokenizer_config.json").exists(), f"{src} missing: run scripts/fetch_tokenizers.sh"
    tok = json.loads((src / "tokenizer.json").read_text())
    vocab = 1 + max([*tok["model"]["vocab"].values(), *(t["id"] for t in tok.get("added_tokens", []))])
    h, inter = 8, 16
    config = dict(model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=vocab, hidden_size=h,
                  intermediate_size=inter, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                  max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=True, rope_theta=10000.0)
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(0)
    w = lambda *shape: (0.02 * rng.standard_normal(shape)).astype(np.float16)  # noqa: E731
    one = np.ones(h, np.float16)
    p = "model.layers.0."
    save_file({"model.embed_tokens.weight": w(vocab, h), "model.norm.weight": one, p + "input_layernorm.weight": one,
               p + "post_attention_layernorm.weight": one, p + "self_attn.q_proj.weight": w(h, h),
               p + "self_attn.k_proj.weight": w(h // 2, h), p + "self_attn.v_proj.weight": w(h // 2, h),
               p + "self_attn.o_proj.weight": w(h, h), p + "mlp.gate_proj.weight": w(inter, h),
               p + "mlp.up_proj.weight": w(inter, h), p + "mlp.down_proj.weight": w(h, inter)},
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / f, folder / f)
    return folder


@pytest.mark.parametrize("name", ["qwen2_5", "qwen3", "mistral_nemo", "llama3"])
def test_tool_prompt_ids_equal_transformers(name, tmp_path):
    import transformers

    folder = tiny_model(name, tmp_path / name)
    ref = transformers.AutoTokenizer.from_pretrained(folder)
    s = Server("--model", folder)  # the later --model wins over the default one Server passes
    try:
        for tools in ([WEATHER, CLOCK], [WEATHER]):
            for messages in (conversation(json.dumps), conversation(json.dumps)[:3], conversation(json.dumps)[:2]):
                if name == "mistral_nemo" and messages[-1]["role"] == "assistant":
                    continue  # its template ends a call turn with EOS and no generation prompt follows it
                status, ours = post(s, "/tokenize", {"messages": messages, "tools": tools}, key=None)
                assert status == 200, ours
                # vLLM's view of the same request: the arguments as objects.
                objects = [{**m, "tool_calls": [{**c, "function": {**c["function"], "arguments": json.loads(
                    c["function"]["arguments"])}} for c in m["tool_calls"]]} if "tool_calls" in m else m
                           for m in messages]
                want = ref.apply_chat_template(objects, tools=tools, add_generation_prompt=True, tokenize=True,
                                               return_dict=False)
                assert ours["tokens"] == list(want), (name, len(messages), ref.decode(want), ref.decode(ours["tokens"]))
        # Without tools the template renders no tool section: the two prompts differ where it should be.
        _, bare = post(s, "/tokenize", {"messages": conversation(json.dumps)[:2]}, key=None)
        _, with_tools = post(s, "/tokenize", {"messages": conversation(json.dumps)[:2], "tools": [WEATHER]}, key=None)
        assert (bare["tokens"] == with_tools["tokens"]) == (name == "llama3")
    finally:
        assert s.stop() == 0, "".join(s.log)


def test_named_templates_and_special_tokens_follow_transformers(tmp_path):
    """A tokenizer with named chat templates: a request with tools renders `tool_use`, one without renders
    `default`; both see transformers' special_tokens_map (pad_token here, not only bos/eos)."""
    import transformers

    folder = tiny_model("qwen2_5", tmp_path / "named")
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["chat_template"] = [
        {"name": "default", "template": "D{{ messages|length }}|{{ pad_token }}|{{ unk_token is defined }}"},
        {"name": "tool_use", "template": "T{{ tools|length }} {{ tools[0].function.name }}|{{ pad_token }}"}]
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    ref = transformers.AutoTokenizer.from_pretrained(folder)
    s = Server("--model", folder)
    try:
        messages = conversation(json.dumps)[:2]
        for tools in (None, [WEATHER, CLOCK]):
            status, ours = post(s, "/tokenize", {"messages": messages, **({"tools": tools} if tools else {})},
                                key=None)
            assert status == 200, ours
            want = ref.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=True,
                                           return_dict=False)
            assert ours["tokens"] == list(want), (ref.decode(want), ref.decode(ours["tokens"]))
    finally:
        assert s.stop() == 0, "".join(s.log)
