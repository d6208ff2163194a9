"""Chat-template parity: `mlxgp chat-template` against transformers' apply_chat_template (tokenize=False),
rendered live in the same test on the same conversations, byte for byte. Where the reference raises
(e.g. strict role alternation), mlxgp must report an error for that conversation too."""
import json

import pytest

from conftest import CACHE, DEFAULT_GGUF

# Conversations: single/multi-turn, with/without system, unicode, newlines, quotes, template-like text,
# empty content, broken alternation, think blocks, tool turns and extra variables.
SYS = {"role": "system", "content": "You are a terse assistant."}
U1 = {"role": "user", "content": "What is 2+2?"}
A1 = {"role": "assistant", "content": "4"}
U2 = {"role": "user", "content": "And 3+3?"}
A2 = {"role": "assistant", "content": "6."}
TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city — °C",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]}}}
CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"id": "abc123XYZ", "type": "function",
     "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2, "x": [1.5, None, True]}}}]}
RESULT = {"role": "tool", "tool_call_id": "abc123XYZ", "content": "{\"temp\": 21}"}
CONVERSATIONS = [
    [U1],
    [SYS, U1],
    [U1, A1, U2],
    [SYS, U1, A1, U2, A2],
    [SYS, U1, A1, U2, A2, {"role": "user", "content": "Thanks!"}],
    [{"role": "user", "content": "héllo wörld — 世界 🌍 ñ ü \u00a0nbsp"}],
    [{"role": "user", "content": "  leading and trailing  \n\n"}, {"role": "assistant", "content": "\n ok \t"}],
    [{"role": "user", "content": "line1\nline2\r\n\ttabbed\n\n\nend"}],
    [{"role": "user", "content": "quotes ' \" \\ backslash {{ not a tag }} {% if %} {# c #} <|im_start|>"}],
    [{"role": "user", "content": ""}],
    [SYS],
    [U1, U2],  # broken alternation
    [A1, U1],  # starts with the assistant
    [SYS, SYS, U1],
    [U1, {"role": "assistant", "content": "<think>\nLet me add.\n</think>\n\n4"}, U2],
    [U1, {"role": "assistant", "content": "4", "reasoning_content": "two plus two"}, U2],
    [U1, A1, {"role": "tool", "content": "{\"result\": 42}"}, U2],
    [{"role": "user", "content": "{\"json\": [1, 2.5, null, true], \"k\": \"v\"}"}],
    [{"role": "user"}],  # no content: undefined in the template
    [{"role": "user", "content": None}],
    [{"role": "user", "content": "hi", "name": "bob", "extra": [1, {"k": 2.5}]}],
    {"messages": [U1], "tools": [TOOL]},
    {"messages": [SYS, U1, CALL, RESULT, RESULT], "tools": [TOOL]},
    {"messages": [U1, CALL, RESULT]},
    {"messages": [U1], "enable_thinking": False},
    {"messages": [SYS, U1, A1, U2], "enable_thinking": True},
]

# Templates without a tokenizer_config.json here; widely published formats rendered through
# transformers' own machinery (render_jinja_template), exercising alternation errors and | trim.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
# Engine coverage beyond the shipped templates: macros, loop helpers, slicing, filters, tests,
# tojson options, namespaces, dict methods, whitespace control with +/- and lstrip/trim_blocks.
FEATURES_TEMPLATE = """{#- a comment -#}
{%- macro turn(role, text, suffix='!') -%}
<{{ role|upper }}>{{ text }}{{ suffix }}
{%- endmacro %}
{% set ns = namespace(count=0, roles=[]) %}
{% for m in messages if m.role != 'tool' %}
    {%- set ns.count = ns.count + 1 %}
    {%- set ns.roles = ns.roles + [m.role] %}
  {{ loop.index }}/{{ loop.length }} {{ loop.revindex0 }}{% if loop.previtem is defined %} prev={{ loop.previtem.role }}{% endif %}
 {{ turn(m.role, m.content[:12] ~ '|' ~ m.content[::-1][:5], suffix=loop.cycle('.', '?')) }}
    {%+ if m.content is string and m.content.startswith('What') %}Q{% elif m.content|length > 20 %}L{% else %}S{% endif %}
{% else %}
no messages
{% endfor %}
{{- ns.count }} {{ ns.roles|join(',') }} {{ ns.roles|unique|list|length }}
{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|map('trim')|list|tojson }}
{{ messages|rejectattr('role', 'in', ['system', 'tool'])|list|length }} {{ (messages|first).role }} {{ (messages|last)['role'] }}
{{ {'b': 1, 'a': [1, 2.5, none, true, 'x\\ny']}|tojson(indent=2) }} {{ 'é世🌍"'|tojson(ensure_ascii=true) }} {{ [1, 'é']|tojson(false, 1) }} {{ (1, 'a') }} {{ (2,) }} {{ {'k': 1}.items()|list }} {{ (1, 2) == [1, 2] }}
{{ {'b': 1, 'a': "q\\"uote"}|tojson(sort_keys=true, separators=(',', ':')) if false else {'b': 1}|tojson }}
{% set d = {'k': 'v', 'n': 3} %}{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {{ d.get('missing', 'dflt') }} {{ d.keys()|list }}
{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ 1.5 * 2 }} {{ '%d'|length }} {{ 'ab' * 3 }} {{ [1, 2] + [3] }}
{{ 'Hello World'.split(' ') }} {{ '  x y  '.split() }} {{ 'a,b,,c'.split(',') }} {{ 'hello world'.title() }} {{ 'hello-world x'|title }}
{{ 'xxhixx'.strip('x') }} {{ '--a--'.lstrip('-') }} {{ '--a--'.rstrip('-') }} {{ 'aXbXc'.replace('X', '_', 1) }} {{ 'abc'|replace('b', 'B') }}
{{ none }} {{ true }} {{ 3.0 }} {{ 1e20 }} {{ 0.0001 }} {{ [none, 'it\\'s', "q"] }} {{ {'a': none} }} {{ undefined_name }}|
{{ missing is defined }} {{ none is none }} {{ 3 is odd }} {{ 4 is divisibleby 2 }} {{ 'x' in 'xyz' }} {{ 2 not in [1, 3] }} {{ [] is iterable }}
{{ messages[-1].role if messages else 'none' }} {{ (messages|length) - 1 }} {{ messages[0]['content'][0] }} {{ 'ü世' ~ 'x'|length }}
{% for i in range(3) %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}{% for i in range(10) %}{% if i > 2 %}{% break %}{% endif %}{{ i }}{% endfor %}
{% set block %}captured {{ messages|length }}{% endset %}{{ block|trim }} {{ strftime_now('%Y')|length }}
{%- if add_generation_prompt %}
    <gen>
{%- endif %}
"""


def _reference_tokenizer(name):
    import transformers

    if name == "smollm2":
        return transformers.AutoTokenizer.from_pretrained(DEFAULT_GGUF.parent, gguf_file=DEFAULT_GGUF.name)
    folder = CACHE / "tokenizers" / name
    assert (folder / "tokenizer_config.json").exists(), f"{folder} missing: run scripts/fetch_tokenizers.sh"
    return transformers.AutoTokenizer.from_pretrained(folder)


def _reference(name):
    """(template source, render(conversation, add_generation_prompt) -> str, bos, eos)."""
    from transformers.utils.chat_template_utils import _normalize_chat_messages, render_jinja_template

    if name in ("gemma", "llama2", "features"):
        source = {"gemma": GEMMA_TEMPLATE, "llama2": LLAMA2_TEMPLATE, "features": FEATURES_TEMPLATE}[name]
        bos, eos = {"gemma": ("<bos>", "<eos>"), "llama2": ("<s>", "</s>"), "features": ("<B>", "<E>")}[name]

        def render(conv, agp):
            messages, extra = _split(conv)
            # What tokenizer.apply_chat_template does before rendering (drops None-valued keys).
            messages = _normalize_chat_messages(messages)
            rendered, _ = render_jinja_template(conversations=[messages], chat_template=source,
                                                add_generation_prompt=agp, bos_token=bos, eos_token=eos, **extra)
            return rendered[0]

        return source, render, bos, eos
    tok = _reference_tokenizer(name)

    def render(conv, agp):
        messages, extra = _split(conv)
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=agp, **extra)

    return tok.chat_template, render, tok.bos_token, tok.eos_token


def _split(conv):
    if isinstance(conv, dict):
        extra = dict(conv)
        return extra.pop("messages"), extra
    return conv, {}


TEMPLATES = ["smollm2", "qwen3", "llama3", "qwen2_5", "mistral_nemo", "gemma", "gemma3", "llama2", "features"]


@pytest.mark.parametrize("name", TEMPLATES)
def test_chat_template_matches_transformers(name, run_mlxgp, tmp_path):
    source, render, bos, eos = _reference(name)
    assert source, f"{name} has no chat template"
    tpl = tmp_path / "template.jinja"
    tpl.write_text(source, encoding="utf-8")
    convs = tmp_path / "conversations.jsonl"
    convs.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in CONVERSATIONS), encoding="utf-8")
    specials = [a for flag, tok in (("--bos", bos), ("--eos", eos)) if tok for a in (flag, tok)]
    identical = total = raised = 0
    for agp in (True, False):
        flags = [] if agp else ["--no-generation-prompt"]
        out = run_mlxgp("chat-template", "--template-file", tpl, "--messages-jsonl", convs, *specials, *flags)
        got = [json.loads(line) for line in out.stdout.splitlines()]
        assert len(got) == len(CONVERSATIONS)
        for conv, ours in zip(CONVERSATIONS, got):
            total += 1
            try:
                want = render(conv, agp)
            except Exception as e:  # the reference raised: so must we
                assert isinstance(ours, dict) and "error" in ours, (
                    f"{name} agp={agp}: transformers raised {e!r} but mlxgp rendered {ours!r} for {conv}")
                identical += 1
                raised += 1
                continue
            assert ours == want, f"{name} agp={agp} conversation {conv}:\nmlxgp: {ours!r}\nhf:    {want!r}"
            identical += 1
    print(f"{name}: {identical}/{total} conversations identical ({raised} of them raise in both)")
    assert identical == total


def test_raise_exception_message_and_exit_code(run_mlxgp, tmp_path):
    """A conversation-level error from --messages-json is one stderr line, exit code 2."""
    tpl = tmp_path / "t.jinja"
    tpl.write_text(LLAMA2_TEMPLATE, encoding="utf-8")
    msgs = tmp_path / "m.json"
    msgs.write_text(json.dumps([U1, U2]), encoding="utf-8")
    proc = run_mlxgp("chat-template", "--template-file", tpl, "--messages-json", msgs, "--bos", "<s>", "--eos", "</s>",
                     check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("[chat_template] Conversation roles must alternate "
                                   "user/assistant/user/assistant/...")


@pytest.mark.parametrize("source,needle", [
    ("{% for x in y %}", "at line 1"),
    ("ok\n{{ a + }}", "at line 2"),
    ("{% include 'x' %}", "unsupported statement 'include' at line 1"),
    ("{{ 'unterminated }}", "unterminated string at line 1"),
    ("a\n\n{{ x | nosuchfilter }}", "unsupported filter 'nosuchfilter' at line 3"),
])
def test_template_errors_are_one_line(run_mlxgp, tmp_path, source, needle):
    tpl = tmp_path / "t.jinja"
    tpl.write_text(source, encoding="utf-8")
    msgs = tmp_path / "m.json"
    msgs.write_text(json.dumps([U1]), encoding="utf-8")
    proc = run_mlxgp("chat-template", "--template-file", tpl, "--messages-json", msgs, check=False)
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.startswith("[chat_template] ") and needle in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1


def test_mutated_templates_match_jinja(run_mlxgp, tmp_path):
    """Differential fuzz: random edits of the templates above (bounded, fixed seed). Whatever
    transformers does with the edited template (render, or raise at parse or render time), mlxgp
    must do the same: identical text, or an error; never a crash."""
    import random

    from transformers.utils.chat_template_utils import _normalize_chat_messages, render_jinja_template

    sources = [GEMMA_TEMPLATE, LLAMA2_TEMPLATE, FEATURES_TEMPLATE]
    for name in ("qwen3", "mistral_nemo"):
        sources.append(json.loads((CACHE / "tokenizers" / name / "tokenizer_config.json").read_text())["chat_template"])
    snippets = ["{{", "}}", "{%", "%}", "{%-", "-%}", "{#", "#}", "|trim", "|length", "|tojson", "|first", " if ",
                " else ", "[::-1]", "[1:]", ".strip()", " ~ ", " + ", " in ", " is defined", " is none", "loop.",
                "not ", " and ", " or ", "'", '"', "(", ")", "\n", "  ", "-", "none", "1", "messages[0]", ".content"]
    rng = random.Random(20260)
    convs = [c for c in CONVERSATIONS if isinstance(c, list)]
    jsonl = tmp_path / "c.jsonl"
    tpl = tmp_path / "t.jinja"
    rendered = raised = 0
    stricter = []
    for it in range(150):
        src = rng.choice(sources)
        for _ in range(rng.randint(1, 3)):
            at, op = rng.randrange(len(src) + 1), rng.randrange(3)
            if op == 0:
                src = src[:at] + src[at + rng.randint(1, 4):]
            elif op == 1:
                src = src[:at] + rng.choice(snippets) + src[at:]
            else:
                b = rng.randrange(len(src) + 1)
                src = src[:at] + src[b:b + rng.randint(1, 20)] + src[at:]
        chosen = rng.sample(convs, 3)
        tpl.write_text(src, encoding="utf-8")
        jsonl.write_text("".join(json.dumps(c) + "\n" for c in chosen), encoding="utf-8")
        proc = run_mlxgp("chat-template", "--template-file", tpl, "--messages-jsonl", jsonl, "--bos", "<s>",
                         "--eos", "</s>", check=False)
        assert proc.returncode in (0, 2), f"mutation {it}: exit {proc.returncode} {proc.stderr}\n{src}"
        ours = [json.loads(line) for line in proc.stdout.splitlines()] if proc.returncode == 0 else [None] * 3
        for conv, got in zip(chosen, ours):
            try:
                want = render_jinja_template(conversations=[_normalize_chat_messages(conv)], chat_template=src, add_generation_prompt=True,
                                             bos_token="<s>", eos_token="</s>")[0][0]
            except Exception:
                assert got is None or isinstance(got, dict), f"mutation {it}: jinja raised, mlxgp gave {got!r}\n{src}"
                raised += 1
                continue
            if isinstance(got, dict) or got is None:
                # Stricter than Jinja: e.g. an argument-less |selectattr that Jinja's lazy generator never runs.
                stricter.append((it, got))
                continue
            assert got == want, f"mutation {it}: mlxgp {got!r} != jinja {want!r}\n{src}"
            rendered += 1
    print(f"mutated templates: {rendered} rendered identically, {raised} raised in both, stricter: {stricter}")
    assert rendered > 50 and raised > 50 and len(stricter) <= 3


@pytest.mark.parametrize("name", ["smollm2", "llama3", "mistral_nemo"])
def test_model_chat_template_matches_transformers(name, run_mlxgp, tmp_path):
    """`--model`: the template and bos/eos strings come from our tokenizer loader (GGUF metadata or
    tokenizer_config.json), compared with transformers' tokenizer loaded from the same files."""
    _, render, _, _ = _reference(name)
    model = DEFAULT_GGUF if name == "smollm2" else CACHE / "tokenizers" / name
    convs = tmp_path / "conversations.jsonl"
    convs.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in CONVERSATIONS), encoding="utf-8")
    out = run_mlxgp("chat-template", "--model", model, "--messages-jsonl", convs)
    got = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(got) == len(CONVERSATIONS)
    for conv, ours in zip(CONVERSATIONS, got):
        try:
            want = render(conv, True)
        except Exception:
            assert isinstance(ours, dict) and "error" in ours, f"{name}: transformers raised, mlxgp gave {ours!r}"
            continue
        assert ours == want, f"{name} conversation {conv}:\nmlxgp: {ours!r}\nhf:    {want!r}"


TOOLS = [{"type": "function", "function": {"name": "f", "description": "d",
                                           "parameters": {"type": "object", "properties": {}}}}]
TEMPLATE_SOURCES = {
    "list": dict(cfg=[{"name": "default", "template": "DEFAULT {{ messages[0].content }}"},
                      {"name": "tool_use", "template": "TOOLUSE {{ tools|length }}"}]),
    "list_without_default": dict(cfg=[{"name": "tool_use", "template": "TOOLUSE {{ tools|length }}"},
                                      {"name": "rag", "template": "RAG"}]),
    "jinja_over_config": dict(cfg="CFG", jinja="JINJA {{ messages|length }}"),
    "additional": dict(jinja="MAIN", extra={"tool_use": "ADDTOOL {{ tools[0].function.name }}"}),
    "additional_over_list": dict(cfg=[{"name": "default", "template": "CFGDEFAULT"}], extra={"tool_use": "ADD"}),
}


@pytest.mark.parametrize("case", sorted(TEMPLATE_SOURCES))
def test_named_chat_templates_follow_transformers(case, run_mlxgp, tmp_path):
    """Which template `--model` renders: chat_template.jinja / additional_chat_templates/*.jinja over the
    config's chat_template (a string or a list of named ones), tool_use when tools are given, an error
    where transformers finds no default."""
    import shutil

    import transformers

    src = CACHE / "tokenizers" / "qwen2_5"
    spec = TEMPLATE_SOURCES[case]
    d = tmp_path / case
    d.mkdir()
    shutil.copy(src / "tokenizer.json", d)
    cfg = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg.pop("chat_template", None)
    if "cfg" in spec:
        cfg["chat_template"] = spec["cfg"]
    (d / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    if "jinja" in spec:
        (d / "chat_template.jinja").write_text(spec["jinja"], encoding="utf-8")
    for name, source in spec.get("extra", {}).items():
        (d / "additional_chat_templates").mkdir(exist_ok=True)
        (d / "additional_chat_templates" / f"{name}.jinja").write_text(source, encoding="utf-8")
    hf = transformers.AutoTokenizer.from_pretrained(d)
    msgs = [{"role": "user", "content": "x"}]
    for tools in (None, TOOLS, []):
        conv = tmp_path / "c.json"
        conv.write_text(json.dumps(msgs if tools is None else {"messages": msgs, "tools": tools}), encoding="utf-8")
        proc = run_mlxgp("chat-template", "--model", d, "--messages-json", conv, check=False)
        try:
            want = hf.apply_chat_template(msgs, tools=tools, tokenize=False, add_generation_prompt=True)
        except Exception as e:  # no default template (ValueError), or the template itself raised
            assert proc.returncode == 2, f"{case} tools={tools}: transformers raised {e}, mlxgp gave {proc.stdout!r}"
            assert proc.stderr.startswith("[chat_template] ") and proc.stderr.count("\n") == 1, proc.stderr
            continue
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == want, f"{case} tools={tools}: mlxgp {proc.stdout!r} != transformers {want!r}"


SPECIALS_TEMPLATE = ("{% for k in ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', "
                     "'mask_token'] %}{{ k }}={% if k == 'bos_token' %}{{ bos_token }}{% elif k == 'eos_token' %}"
                     "{{ eos_token }}{% elif k == 'unk_token' %}{{ unk_token }}{% elif k == 'sep_token' %}"
                     "{{ sep_token }}{% elif k == 'pad_token' %}{{ pad_token }}{% elif k == 'cls_token' %}"
                     "{{ cls_token }}{% else %}{{ mask_token }}{% endif %};{% endfor %}"
                     "{{ unk_token is defined }}{{ pad_token is defined }}{{ mask_token is defined }}")


@pytest.mark.parametrize("name", ["smollm2", "gemma", "llama2", "qwen3", "gpt2"])
def test_model_special_tokens_reach_the_template(name, run_mlxgp, tmp_path):
    """`--model` hands the template transformers' whole special_tokens_map (unk_token, pad_token, ...),
    not only bos/eos."""
    tok = _reference_tokenizer(name)
    model = DEFAULT_GGUF if name == "smollm2" else CACHE / "tokenizers" / name
    tpl = tmp_path / "t.jinja"
    tpl.write_text(SPECIALS_TEMPLATE, encoding="utf-8")
    msgs = tmp_path / "m.json"
    msgs.write_text(json.dumps([U1]), encoding="utf-8")
    want = tok.apply_chat_template([U1], chat_template=SPECIALS_TEMPLATE, tokenize=False)
    got = run_mlxgp("chat-template", "--model", model, "--template-file", tpl, "--messages-json", msgs).stdout
    assert got == want


CASE_TEMPLATES = ["{{ messages[0].content|upper }}", "{{ messages[0].content|lower }}",
                  "{{ messages[0].content|title }}", "{{ messages[0].content|capitalize }}",
                  "{{ messages[0].content.title() }}", "{{ messages[0].content.upper() }}",
                  "{% for c in messages[0].content %}{{ 1 if c is upper else 0 }}{{ 1 if c is lower else 0 }}"
                  "{% endfor %}|{{ messages[0].content is upper }}{{ messages[0].content is lower }}",
                  "{{ messages[0].content.split()|unique|join(' ') }}"]


def test_case_filters_match_jinja_over_unicode(run_mlxgp, tmp_path):
    """upper / lower / title / capitalize, `is upper` / `is lower` and |unique follow Python's str over every
    code point below U+20000 (cased letters end before it), final sigma and multi-character mappings included."""
    from transformers.utils.chat_template_utils import render_jinja_template

    cps = [c for c in range(0x20000) if not 0xD800 <= c < 0xE000 and c not in (0x0D, 0x85, 0x2028, 0x2029)]
    texts = ["".join(chr(c) for c in cps[i:i + 1500]) for i in range(0, len(cps), 1500)]
    texts += ["ΟΔΟΣ ΣΑ Σ .Σ. ΑΣ'Σ Α\u0301Σ ΑΣ\u0301Α", "ǆemal élan-vital (straße) [ﬁx] <İi> ŉ ΐ", "a A é É ß SS ss",
              "Ǆ ǅ ǆ \u1f88 \u1f80", ""]
    convs = tmp_path / "c.jsonl"
    convs.write_text("".join(json.dumps([{"role": "user", "content": t}]) + "\n" for t in texts), encoding="utf-8")
    tpl = tmp_path / "t.jinja"
    for source in CASE_TEMPLATES:
        tpl.write_text(source, encoding="utf-8")
        got = [json.loads(line) for line in run_mlxgp("chat-template", "--template-file", tpl, "--messages-jsonl",
                                                      convs).stdout.splitlines()]
        for text, ours in zip(texts, got):
            want = render_jinja_template(conversations=[[{"role": "user", "content": text}]],
                                         chat_template=source)[0][0]
            if ours != want:
                bad = next(i for i, (a, b) in enumerate(zip(ours, want)) if a != b) if ours and want else 0
                raise AssertionError(f"{source}: first difference at {bad}: mlxgp {ours[bad:bad + 20]!r} != "
                                     f"jinja {want[bad:bad + 20]!r} (input from U+{ord(text[0]) if text else 0:04X})")


def _ordering_templates():
    import random

    rng = random.Random(7)
    floats = [round(rng.uniform(-1000, 1000), rng.randint(0, 6)) for _ in range(40)]
    floats += [0.5, 1.5, 2.5, -0.5, 2.675, 0.125, 0.375, 1e-7, 123456.5, -0.0, 1e300]
    people = ("[{'name': 'bo', 'age': 30, 'pet': {'kind': 'cat'}}, {'name': 'Al', 'age': 25, 'pet': {'kind': 'dog'}},"
              " {'name': 'al', 'age': 30, 'pet': {'kind': 'Cat'}}, {'name': 'Cy', 'age': 25, 'pet': {'kind': 'ant'}}]")
    return [
        "{{ [3, 1, 2] | sort }} {{ [3, 1, 2] | sort(true) }} {{ ['b', 'A', 'a', 'B'] | sort }}",
        "{{ ['b', 'A', 'a', 'B'] | sort(case_sensitive=true) }} {{ ['b', 'A', 'a', 'B'] | sort(reverse=true) }}",
        "{{ [2.5, 1, true, 0.5, 3] | sort }} {{ 'hello' | sort }} {{ {'b': 1, 'a': 2} | sort }}",
        "{{ " + people + " | sort(attribute='age') | map(attribute='name') | list }}",
        "{{ " + people + " | sort(attribute='age', reverse=true) | map(attribute='name') | list }}",
        "{{ " + people + " | sort(attribute='age,name') | map(attribute='name') | join(',') }}",
        "{{ " + people + " | sort(attribute='pet.kind') | map(attribute='name') | join(',') }}",
        "{{ " + people + " | sort(attribute='pet.kind', case_sensitive=true) | map(attribute='name') | join(',') }}",
        "{{ messages | sort(attribute='role') | map(attribute='content') | list }}",
        "{{ {'b': 1, 'A': 3, 'a': 2, 'C': 0} | dictsort }} {{ {'b': 1, 'A': 3, 'a': 2} | dictsort(true) }}",
        "{{ {'b': 1, 'A': 3, 'a': 1} | dictsort(by='value') }} {{ {'b': 1, 'a': 2} | dictsort(reverse=true) }}",
        "{% for k, v in {'z': 1, 'y': [2], 'x': none} | dictsort %}{{ k }}={{ v }};{% endfor %}",
        "{{ {'a': 1} | dictsort(by='size') }}",
        "{{ [1, 2] | dictsort }}",
        "{{ [3, 1, 2] | max }} {{ [3, 1, 2] | min }} {{ ['b', 'A', 'a', 'B'] | max }} {{ ['b', 'A', 'a', 'B'] | min }}",
        "{{ ['b', 'A', 'a', 'B'] | max(case_sensitive=true) }} {{ [] | max }}|{{ [] | min is defined }}",
        "{{ (" + people + " | max(attribute='age')).name }} {{ (" + people + " | min(attribute='age')).name }}",
        "{{ [1, 2.5, true] | sum }} {{ [] | sum }} {{ [1, 2] | sum(start=10) }} {{ [[1], [2, 3]] | sum(start=[]) }}",
        "{{ " + people + " | sum(attribute='age') }} {{ [0.1, 0.2, 0.3] | sum }}",
        "{{ ['a', 'b'] | sum }}",
        "{{ ['a', 'b'] | sum(start='') }}",
        "{{ [1, 'a'] | sort }}",
        "{{ [none, 1] | max }}",
        "{{ " + repr(floats) + " | map('round') | list }}",
        "{{ " + repr(floats) + " | map('round', 2) | list }}",
        "{{ " + repr(floats) + " | map('round', 1, 'floor') | list }}",
        "{{ " + repr(floats) + " | map('round', 3, 'ceil') | list }}",
        "{{ 7 | round }} {{ 7 | round(2) }} {{ 7 | round(1, 'ceil') }} {{ true | round }} {{ 2.5 | round(0) }}",
        "{{ 3.14159 | round(precision=3) }} {{ 3.14159 | round(method='floor') }} {{ -3.5 | round }}",
        "{{ 1.5 | round(1, 'up') }}",
        "{{ '1.5' | round }}",
        "{{ 1.5 | round(1.0) }}",
    ]


def test_ordering_filters_match_jinja(run_mlxgp, tmp_path):
    """sort, dictsort, min, max, sum and round against Jinja as transformers runs it: the same text, or an
    error in both (mlxgp refuses only what Jinja raises on)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    msgs = tmp_path / "m.json"
    conv = [{"role": "user", "content": "b"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "c"}]
    msgs.write_text(json.dumps(conv), encoding="utf-8")
    tpl = tmp_path / "t.jinja"
    failures = []
    for source in _ordering_templates():
        tpl.write_text(source, encoding="utf-8")
        proc = run_mlxgp("chat-template", "--template-file", tpl, "--messages-json", msgs, check=False)
        try:
            want = render_jinja_template(conversations=[conv], chat_template=source)[0][0]
        except Exception as e:
            if proc.returncode != 2 or not proc.stderr.startswith("[chat_template] "):
                failures.append(f"{source}: jinja raised {e!r}, mlxgp exit {proc.returncode}: {proc.stdout!r}")
            continue
        if proc.returncode != 0 or proc.stdout != want:
            failures.append(f"{source}: mlxgp {proc.stdout!r} {proc.stderr!r} != jinja {want!r}")
    assert not failures, "\n".join(failures)
