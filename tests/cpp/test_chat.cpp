// Unit tests for the chat-template engine. Expected strings are what Jinja2 renders with
// transformers' settings (trim_blocks, lstrip_blocks); the parity suite compares real templates live.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "mlxgp/chat_template.h"
#include "mlxgp/error.h"

using mlxgp::ChatTemplate;
using ojson = nlohmann::ordered_json;

namespace {

std::string render(const std::string& src, const ojson& ctx = ojson::object()) {
  return ChatTemplate::parse(src).render(ctx);
}

std::string error_of(const std::string& src, const ojson& ctx = ojson::object()) {
  try {
    render(src, ctx);
  } catch (const mlxgp::Error& e) {
    EXPECT_EQ(e.component(), "chat_template");
    return e.what();
  }
  ADD_FAILURE() << "no error for: " << src.substr(0, 200);
  return "";
}

}  // namespace

TEST(ChatTemplate, WhitespaceControl) {
  EXPECT_EQ(render("a  {{- 'b' -}}  \n c"), "abc");
  EXPECT_EQ(render("a\n  {% if true %}\n  x\n  {% endif %}\nb"), "a\n  x\nb");  // lstrip + trim_blocks
  EXPECT_EQ(render("a\n  {%+ if true %}x{% endif %}"), "a\n  x");               // + keeps the indent
  EXPECT_EQ(render("{% if true +%}\nx{% endif %}"), "\nx");                     // +%} keeps the newline
  EXPECT_EQ(render("a {{ 'b' }}\nc"), "a b\nc");                                // no trim after }}
  EXPECT_EQ(render("x {# note #}\ny"), "x y");                                  // comments trim too
  EXPECT_EQ(render("x\n"), "x");                                                // keep_trailing_newline=False
  EXPECT_EQ(render("a\r\nb"), "a\nb");
}

TEST(ChatTemplate, LoopsAndLoopVariables) {
  ojson ctx = {{"xs", {"a", "b", "c"}}};
  EXPECT_EQ(render("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ x }}{{ loop.first }}{{ loop.last }}"
                   "{{ loop.length }}|{% endfor %}",
                   ctx),
            "10aTrueFalse3|21bFalseFalse3|32cFalseTrue3|");
  EXPECT_EQ(render("{% for x in xs %}{{ loop.previtem|default('-') }}{{ loop.revindex }}{% endfor %}", ctx), "-3a2b1");
  EXPECT_EQ(render("{% for x in xs if x != 'b' %}{{ x }}{{ loop.length }}{% endfor %}", ctx), "a2c2");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for x in xs[::-1] %}{{ x }}{% endfor %}", ctx), "cba");
  EXPECT_EQ(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}{{ v }}{% endfor %}"), "a1b2");
  EXPECT_EQ(render("{% for i in range(5) %}{% if i == 1 %}{% continue %}{% elif i == 3 %}{% break %}{% endif %}"
                   "{{ i }}{% endfor %}"),
            "02");
  // Assignments inside a loop do not leak out; a namespace carries state across iterations.
  EXPECT_EQ(render("{% set n = 0 %}{% for x in xs %}{% set n = n + 1 %}{% endfor %}{{ n }}", ctx), "0");
  EXPECT_EQ(
      render("{% set ns = namespace(n=0) %}{% for x in xs %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}", ctx),
      "3");
}

TEST(ChatTemplate, ExpressionsAndFilters) {
  EXPECT_EQ(render("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }}"),
            "7 9 3 -4 2 3.5");
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ none }} {{ 'x' if false else 'y' }} {{ 'x' if false }}|"), "a1None y |");
  EXPECT_EQ(render("{{ [1, 'a', none, true] }} {{ {'k': 'it\\'s'} }} {{ 2.50 }} {{ 1e-5 }}"),
            "[1, 'a', None, True] {'k': \"it's\"} 2.5 1e-05");
  EXPECT_EQ(render("{{ '  hi  '|trim }}|{{ 'Ab'|upper }}{{ 'Ab'|lower }}|{{ [1, 2]|join('-') }}|{{ 'héllo'|length }}"),
            "hi|ABab|1-2|5");
  EXPECT_EQ(render("{{ x|default('d') }}{{ ''|default('e', true) }}{{ [3, 4]|first }}{{ [3, 4]|last }}"), "de34");
  EXPECT_EQ(render("{{ {'b': 1, 'a': 'é\"\\n'}|tojson }}"), "{\"b\": 1, \"a\": \"é\\\"\\n\"}");
  EXPECT_EQ(render("{{ [1, {'a': 2}]|tojson(indent=2) }}"), "[\n  1,\n  {\n    \"a\": 2\n  }\n]");
  EXPECT_EQ(render("{{ {'b': 1, 'a': 2}|tojson(sort_keys=true, separators=(',', ':')) }}"), "{\"a\":2,\"b\":1}");
  ojson ctx = {{"ms", {{{"role", "user"}, {"c", "1"}}, {{"role", "bot"}, {"c", "2"}}, {{"role", "user"}, {"c", "3"}}}}};
  EXPECT_EQ(render("{{ ms|selectattr('role', 'equalto', 'user')|map(attribute='c')|join }}"
                   "{{ ms|rejectattr('role', 'equalto', 'user')|list|length }}",
                   ctx),
            "131");
  EXPECT_EQ(render("{{ 'a<b>c'.split('<')[-1] }} {{ 'xaxx'.strip('x') }} {{ 'ab'.startswith(('x', 'a')) }} "
                   "{{ 'a b  c'.split() }} {{ 'hello world'.title() }} {{ 'aaa'.replace('a', 'b', 2) }}"),
            "b>c a True ['a', 'b', 'c'] Hello World bba");
  EXPECT_EQ(render("{{ '世界abc'[1:3] }} {{ '世界abc'[-1] }} {{ [1, 2, 3, 4][::2] }} {{ [1, 2, 3][5:] }}"),
            "界a c [1, 3] []");
  EXPECT_EQ(render("{{ x is defined }} {{ none is none }} {{ 'a' is string }} {{ {} is mapping }} {{ 3 is odd }} "
                   "{{ 1 is not number }} {{ 'b' in ['a', 'b'] }} {{ 'z' not in 'xyz' }}"),
            "False True True True True False True False");
  EXPECT_EQ(render("{{ d.get('a') }} {{ d.get('z', 0) }} {{ d.keys()|list }} {{ d['a'] }} {{ d.missing }}|",
                   {{"d", {{"a", 1}}}}),
            "1 0 ['a'] 1 |");
}

TEST(ChatTemplate, FloatsPrintLikePythonRepr) {
  ojson xs = {1e16,    123456789012345680.0, 0.1,    1e-5,    100.0, 1.5e-7, -0.0, 2.5,
              1.0 / 3, 9999999999999998.0,   0.0001, 0.00012, 1e22,  5e-324};
  EXPECT_EQ(render("{{ xs|join(' | ') }}", {{"xs", xs}}),
            "1e+16 | 1.2345678901234568e+17 | 0.1 | 1e-05 | 100.0 | 1.5e-07 | -0.0 | 2.5 | 0.3333333333333333 | "
            "9999999999999998.0 | 0.0001 | 0.00012 | 1e+22 | 5e-324");
}

TEST(ChatTemplate, SetBlockAndMacros) {
  EXPECT_EQ(render("{% set x %}a{{ 1 }}b{% endset %}[{{ x }}]"), "[a1b]");
  EXPECT_EQ(render("{% macro m(a, b='d') %}<{{ a }}{{ b }}>{% endmacro %}{{ m(1) }}{{ m(2, b='e') }}"), "<1d><2e>");
  EXPECT_EQ(render("{% generation %}kept{% endgeneration %}"), "kept");
}

TEST(ChatTemplate, ApplyChatTemplateBuildsTransformersContext) {
  std::string tpl =
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}{{ tools is none }}{{ eos_token is defined }}";
  mlxgp::SpecialTokens st;
  st.bos_token = "<s>";
  std::vector<mlxgp::ChatMessage> msgs{{"system", "S"}, {"user", "héllo\n"}};
  EXPECT_EQ(mlxgp::apply_chat_template(tpl, msgs, true, st), "<s><system>S<user>héllo\n<assistant>TrueFalse");
  EXPECT_THROW(mlxgp::apply_chat_template(tpl, std::vector<mlxgp::ChatMessage>{}, true, st), mlxgp::Error);
  // Every name of transformers' special_tokens_map reaches the template.
  st = {"B", "E", "U", "P", "S", "C", "M"};
  EXPECT_EQ(mlxgp::apply_chat_template("{{ bos_token }}{{ eos_token }}{{ unk_token }}{{ pad_token }}{{ sep_token }}"
                                       "{{ cls_token }}{{ mask_token }}",
                                       msgs, false, st),
            "BEUPSCM");
}

TEST(ChatTemplate, ErrorsNameTheLine) {
  EXPECT_EQ(error_of("{{ raise_exception('Roles must alternate') }}"), "[chat_template] Roles must alternate");
  EXPECT_EQ(error_of("ok\n{% for x in y %}"),
            "[chat_template] unexpected end of template, expected 'endfor' at line 2");
  EXPECT_EQ(error_of("a\nb\n{{ 1 + }}"), "[chat_template] unexpected '}}' at line 3");
  EXPECT_EQ(error_of("{% endif %}"), "[chat_template] unexpected 'endif' with no open block at line 1");
  EXPECT_EQ(error_of("\n{% include 'x' %}"), "[chat_template] unsupported statement 'include' at line 2");
  EXPECT_EQ(error_of("{{ 'abc }}"), "[chat_template] unterminated string at line 1");
  EXPECT_EQ(error_of("x\n{{ y|frobnicate }}"), "[chat_template] unsupported filter 'frobnicate' at line 2");
  // Like Jinja's compiler: unknown names fail the whole template, even in a loop that never runs,
  // but inside `if` branches and inline ifs only when they are reached.
  EXPECT_EQ(error_of("{% for x in [] %}{{ x|nosuch }}{% endfor %}"),
            "[chat_template] unsupported filter 'nosuch' at line 1");
  EXPECT_EQ(error_of("{% if true %}{% for x in [] %}{{ x is nosuch }}{% endfor %}{% endif %}"),
            "[chat_template] unsupported test 'nosuch' at line 1");
  EXPECT_EQ(render("{% if false %}{{ x|nosuch }}{% endif %}ok{{ 1 if true else x|nosuch }}"), "ok1");
  EXPECT_EQ(error_of("{% if true %}{{ x|nosuch }}{% endif %}"),
            "[chat_template] unsupported filter 'nosuch' at line 1");
  EXPECT_EQ(error_of("{{ 1 + 'a' }}"), "[chat_template] unsupported operand type(s) for +: 'int' and 'str' at line 1");
  EXPECT_EQ(error_of("\n\n{{ nope.attr }}"), "[chat_template] 'nope' is undefined at line 3");
  EXPECT_EQ(error_of("{{ x }"), "[chat_template] unterminated {{ tag at line 1");
  EXPECT_EQ(error_of("{% for x in xs recursive %}{% endfor %}"),
            "[chat_template] unsupported 'recursive' for loop at line 1");
}

TEST(ChatTemplate, RunawayTemplatesFailCleanly) {
  EXPECT_NE(error_of("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}").find("too deep"),
            std::string::npos);
  std::string nested;
  for (int i = 0; i < 1000; ++i) nested += "{% if true %}";
  EXPECT_NE(error_of(nested).find("too deep"), std::string::npos);
  EXPECT_NE(error_of("{{ 'x' * 1000000000000 }}").find("too large"), std::string::npos);
  EXPECT_NE(error_of("{{ range(100000000000)|length }}").find("too large"), std::string::npos);
  EXPECT_NE(error_of("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").find("too deep"), std::string::npos);
  // Python integers do not overflow; ours report it rather than wrapping.
  for (const char* e : {"9223372036854775807 + 1", "(-9223372036854775807 - 1) // -1", "-(-9223372036854775807 - 1)",
                        "2 ** 64", "3037000500 * 3037000500"})
    EXPECT_NE(error_of(std::string("{{ ") + e + " }}").find("overflow"), std::string::npos) << e;
  EXPECT_EQ(render("{{ [1, 2, 3][::9223372036854775807] }}{{ 'abc'[2::-9223372036854775807] }}"), "[1]c");
  EXPECT_EQ(render("{{ range(0, 9223372036854775807, 4611686018427387904)|length }}"), "2");
}

// Bounded fuzz: truncations and random byte edits of a realistic template must either render or
// throw mlxgp::Error, never crash or hang.
TEST(ChatTemplate, MalformedTemplatesNeverCrash) {
  const std::string base =
      "{%- set ns = namespace(n=0) %}{% for message in messages[::-1] if message.role != 'x' %}"
      "{%- if loop.first and message['role'] != 'system' %}{{ '<|im_start|>system\\n' }}{% endif %}"
      "{{- '<|im_start|>' + message.role + '\\n' + message.content|trim + '<|im_end|>\\n' }}"
      "{% set ns.n = ns.n + 1 %}{# c #}{% endfor %}{{ ns.n }}{{ {'a': [1, 2.5]}|tojson }}"
      "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  ojson ctx = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"add_generation_prompt", true}};
  auto attempt = [&](const std::string& src) {
    try {
      render(src, ctx);
    } catch (const mlxgp::Error&) {
    }
  };
  ASSERT_NO_THROW(render(base, ctx));
  for (size_t n = 0; n <= base.size(); ++n) attempt(base.substr(0, n));
  std::mt19937 rng(1234);
  const std::string alphabet = "{}%#-+()[]'\".,|:~=!<>*/ \nabcx019_";
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s = base;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t at = rng() % (s.size() + 1);
      switch (rng() % 3) {
        case 0:
          if (at < s.size()) s.erase(at, 1 + rng() % 3);
          break;
        case 1:
          s.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
        default:
          if (at < s.size()) s[at] = alphabet[rng() % alphabet.size()];
      }
    }
    attempt(s);
  }
  attempt(std::string("{{ '\xff\xfe' }}"));
  attempt(std::string("{{ '\xe4' [0] }}"));
}

TEST(ChatTemplate, CaseFollowsPythonStrOverUnicode) {
  EXPECT_EQ(render("{{ 'élan café'|upper }}"), "ÉLAN CAFÉ");
  EXPECT_EQ(render("{{ 'ÉLAN ΣΟΦΟΣ'|lower }}"), "élan σοφος");  // final sigma
  EXPECT_EQ(render("{{ 'straße'|upper }}"), "STRASSE");         // full mappings
  EXPECT_EQ(render("{{ 'İ'|lower|length }}"), "2");
  EXPECT_EQ(render("{{ 'ǆemal élan-vital'|title }}"), "Ǆemal Élan-Vital");  // Jinja: piece[0].upper()
  EXPECT_EQ(render("{{ 'ǆemal ΑΣ'.title() }}"), "ǅemal Ας");                // str.title(): titlecase
  EXPECT_EQ(render("{{ 'ΑΣ'|title }}"), "Ασ");                              // 'Σ'.lower() alone
  EXPECT_EQ(render("{{ 'ǆemal'|capitalize }}"), "ǅemal");
  EXPECT_EQ(render("{{ 'Ὰͅ'.upper() }}"), "ᾺΙ");
  EXPECT_EQ(render("{{ 'é' is upper }}{{ 'É' is upper }}{{ '日本' is lower }}{{ 'ß' is lower }}{{ 'Ǆ' is upper }}"
                   "{{ '' is lower }}{{ '123' is upper }}"),
            "FalseTrueFalseTrueTrueFalseFalse");
}

TEST(ChatTemplate, UniqueIsCaseInsensitiveLikeJinja) {
  EXPECT_EQ(render("{{ ['a','A','b','É','é']|unique|list }}"), "['a', 'b', 'É']");
  EXPECT_EQ(render("{{ ['a','A']|unique(case_sensitive=true)|list }}"), "['a', 'A']");
  EXPECT_EQ(render("{{ [{'n':'X'},{'n':'x'},{'n':'y'}]|unique(attribute='n')|map(attribute='n')|list }}"),
            "['X', 'y']");
  EXPECT_NE(error_of("{{ [[1],[1]]|unique|list }}").find("unhashable type: 'list'"), std::string::npos);
}

TEST(ChatTemplate, SplitWithoutSeparatorKeepsTheRest) {
  EXPECT_EQ(render("{{ ' a b '.split(none, 1) }}{{ ' a b '.rsplit(none, 1) }}"), "['a', 'b '][' a', 'b']");
}

TEST(ChatTemplate, NamedUnicodeEscapesAreRefused) {
  EXPECT_NE(error_of("{{ '\\N{BULLET}' }}").find("\\N{...} escapes"), std::string::npos);
}

// Expected texts are what Jinja 3.1 renders (tests/parity/test_chat_template_parity.py compares live).
TEST(ChatTemplate, OrderingAndAggregateFilters) {
  EXPECT_EQ(render("{{ ['b', 'A', 'a', 'B'] | sort }} {{ ['b', 'A', 'a', 'B'] | sort(reverse=true) }}"),
            "['A', 'a', 'b', 'B'] ['b', 'B', 'A', 'a']");
  EXPECT_EQ(render("{{ [{'n': 'x', 'a': 2}, {'n': 'y', 'a': 1}, {'n': 'z', 'a': 2}] | sort(attribute='a,n') "
                   "| map(attribute='n') | join }}"),
            "yxz");
  EXPECT_EQ(render("{{ {'b': 1, 'A': 3, 'a': 1} | dictsort(by='value') }}"), "[('b', 1), ('a', 1), ('A', 3)]");
  EXPECT_EQ(render("{{ [3, 1, 2] | max }} {{ ['b', 'A'] | min }} {{ [] | max }}|"), "3 A |");
  EXPECT_EQ(render("{{ [1, 2.5, true] | sum }} {{ [[1], [2]] | sum(start=[]) }}"), "4.5 [1, 2]");
  EXPECT_EQ(render("{{ 2.675 | round(2) }} {{ 2.5 | round }} {{ 7 | round }} {{ -0.04 | round(1, 'ceil') }}"),
            "2.67 2.0 7 0.0");
  EXPECT_EQ(render("{{ 1e300 | round(400) }}"), "1e+300");
  EXPECT_EQ(error_of("{{ {'a': 1} | dictsort(by='size') }}"),
            "[chat_template] You can only sort by either \"key\" or \"value\" at line 1");
  EXPECT_EQ(error_of("{{ [1, 'a'] | sort }}"),
            "[chat_template] '<' not supported between instances of 'str' and 'int' at line 1");
  EXPECT_EQ(error_of("{{ 1.5 | round(-1) }}"),
            "[chat_template] round with a negative precision is not supported at line 1");
  EXPECT_EQ(error_of("{{ ['a'] | sum }}"),
            "[chat_template] unsupported operand type(s) for +: 'int' and 'str' at line 1");
}
