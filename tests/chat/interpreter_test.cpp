// Unit tests of the chat-template interpreter on small templates: every construct, whitespace control,
// undefined values and error messages with line numbers.
#include <gtest/gtest.h>

#include <chrono>

#include "core/error.h"
#include "tokenizer/chat_template.h"

namespace nf {
namespace {

using ojson = nlohmann::ordered_json;

std::tm fixed_time() {
  std::tm t{};
  t.tm_year = 2024 - 1900;
  t.tm_mon = 6;
  t.tm_mday = 26;
  t.tm_hour = 13;
  return t;
}

std::string render(std::string_view src, const ojson& ctx = ojson::object()) {
  return chat_template::parse(src).render(ctx, fixed_time);
}

// The nf::error message a template raises (parse or render), or "" if none.
std::string error_of(std::string_view src, const ojson& ctx = ojson::object()) {
  try {
    render(src, ctx);
  } catch (const error& e) {
    return e.what();
  }
  return "";
}

TEST(chat_interpreter, text_and_output) {
  EXPECT_EQ(render("hello {{ name }}!", {{"name", "world"}}), "hello world!");
  EXPECT_EQ(render("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }}"),
            "7 9 3 -4 2 1024 3.5");
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ none }}|{{ 'x' + 'y' }}|{{ [1] + [2] }}"), "a1None|xy|[1, 2]");
  EXPECT_EQ(render("{{ true }} {{ False }} {{ none }} {{ 1.0 }} {{ 2.5 }} {{ {'a': 'b', 'c': [1, none]} }}"),
            "True False None 1.0 2.5 {'a': 'b', 'c': [1, None]}");
  EXPECT_EQ(render(R"({{ "tab\there\nnew \"q\" \u00e9 \x41" }})"), "tab\there\nnew \"q\" é A");
  EXPECT_EQ(render("{{ 'ab' 'cd' }}"), "abcd");
}

TEST(chat_interpreter, if_elif_else) {
  const char* t = "{% if x == 1 %}one{% elif x == 2 %}two{% elif x is undefined %}undef{% else %}other{% endif %}";
  EXPECT_EQ(render(t, {{"x", 1}}), "one");
  EXPECT_EQ(render(t, {{"x", 2}}), "two");
  EXPECT_EQ(render(t, {{"x", 3}}), "other");
  EXPECT_EQ(render(t), "undef");
  EXPECT_EQ(render("{{ 'y' if a else 'n' }}{{ 'y' if b }}", {{"a", ojson::array()}, {"b", false}}), "n");
  EXPECT_EQ(render("{{ a and b }} {{ a or b }} {{ not a }} {{ 0 or '' or 'z' }}", {{"a", 1}, {"b", "s"}}), "s 1 False z");
}

TEST(chat_interpreter, for_loops) {
  ojson ctx = {{"xs", {"a", "b", "c"}}};
  EXPECT_EQ(render("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ x }}{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %}{{ loop.length }}{{ loop.revindex }};{% endfor %}", ctx),
            "10aF33;21b32;32cL31;");
  EXPECT_EQ(render("{% for x in xs %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }} {% endfor %}", ctx), "<a>b a<b>c b<c> ");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for x in missing %}x{% else %}none{% endfor %}"), "none");
  EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}", {{"d", {{"z", 1}, {"a", 2}}}}), "z=1,a=2,");
  EXPECT_EQ(render("{% for k in d %}{{ k }}{% endfor %}", {{"d", {{"z", 1}, {"a", 2}}}}), "za");
  EXPECT_EQ(render("{% for x in range(10) if x is odd %}{{ x }}{{ loop.index }} {% endfor %}"), "11 32 53 74 95 ");
  EXPECT_EQ(render("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"), "013");
  EXPECT_EQ(render("{% for c in 'héj' %}[{{ c }}]{% endfor %}"), "[h][é][j]");
}

TEST(chat_interpreter, set_and_scoping) {
  EXPECT_EQ(render("{% set x = 1 %}{% set y, z = [2, 3] %}{{ x }}{{ y }}{{ z }}"), "123");
  // As in Jinja, a set inside a loop lives for one iteration; namespaces carry values out.
  EXPECT_EQ(render("{% set c = 0 %}{% for i in [1, 2] %}{% set c = c + 1 %}{{ c }}{% endfor %}{{ c }}"), "110");
  EXPECT_EQ(render("{% set ns = namespace(c=0, s='') %}{% for i in [1, 2, 3] %}{% set ns.c = ns.c + i %}{% endfor %}{{ ns.c }}"), "6");
  EXPECT_EQ(render("{% set b %}in {{ 1 + 1 }}{% endset %}[{{ b }}]"), "[in 2]");
  EXPECT_EQ(render("{% if true %}{% set x = 5 %}{% endif %}{{ x }}"), "5");
}

TEST(chat_interpreter, macros_raw_comments) {
  EXPECT_EQ(render("{% macro greet(name, punct='!') %}hi {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }} {{ greet('b', punct='?') }}"),
            "hi a! hi b?");
  EXPECT_EQ(render("a{# a comment {{ x }} #}b{% raw %}{{ not evaluated }}{% endraw %}c"), "ab{{ not evaluated }}c");
}

TEST(chat_interpreter, whitespace_control) {
  // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before it.
  EXPECT_EQ(render("{% if true %}\n  yes\n  {% endif %}\nend"), "  yes\nend");
  EXPECT_EQ(render("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(render("a  {{- 'x' -}}  \n b"), "axb");
  EXPECT_EQ(render("{{ 'x' }}\n{{ 'y' }}\n"), "x\ny");  // expressions keep their newline; one trailing newline goes
  EXPECT_EQ(render("x {% if true %}y{% endif %}"), "x y");  // lstrip only at the start of a line
  EXPECT_EQ(render("  {# c #}\nz"), "z");
}

TEST(chat_interpreter, access_and_slicing) {
  ojson ctx = {{"m", {{"role", "user"}, {"content", "hello"}}}, {"xs", {1, 2, 3, 4, 5}}};
  EXPECT_EQ(render("{{ m.role }} {{ m['content'] }} {{ m.missing }}|{{ xs[0] }}{{ xs[-1] }}{{ xs.1 }}", ctx), "user hello |152");
  EXPECT_EQ(render("{{ xs[1:] }} {{ xs[:2] }} {{ xs[::-1] }} {{ xs[-2:] }} {{ xs[1:4:2] }}", ctx), "[2, 3, 4, 5] [1, 2] [5, 4, 3, 2, 1] [4, 5] [2, 4]");
  EXPECT_EQ(render("{{ 'héllo'[1] }} {{ 'héllo'[1:3] }} {{ 'abc'[::-1] }} {{ 'abc'[:-1] }}"), "é él cba ab");
  EXPECT_EQ(render("{{ 'a' in 'cat' }} {{ 2 in xs }} {{ 'role' in m }} {{ 'x' not in m }} {{ 9 in xs }}", ctx), "True True True True False");
}

TEST(chat_interpreter, tests) {
  ojson ctx = {{"s", "x"}, {"n", 1}, {"f", 1.5}, {"b", true}, {"l", {1}}, {"d", {{"a", 1}}}, {"z", nullptr}};
  EXPECT_EQ(render("{{ s is string }}{{ n is string }}{{ n is number }}{{ f is number }}{{ s is number }}{{ b is boolean }}{{ n is boolean }}", ctx),
            "TrueFalseTrueTrueFalseTrueFalse");
  EXPECT_EQ(render("{{ d is mapping }}{{ l is mapping }}{{ l is iterable }}{{ s is iterable }}{{ n is iterable }}{{ l is sequence }}", ctx),
            "TrueFalseTrueTrueFalseTrue");
  EXPECT_EQ(render("{{ z is none }}{{ z is not none }}{{ q is defined }}{{ q is not defined }}{{ z is defined }}", ctx), "TrueFalseFalseTrueTrue");
  EXPECT_EQ(render("{{ b is true }}{{ b is false }}{{ n is true }}{{ n is equalto 1 }}{{ n is odd }}{{ 4 is divisibleby(2) }}", ctx),
            "TrueFalseFalseTrueTrueTrue");
}

TEST(chat_interpreter, filters) {
  ojson ctx = {{"xs", {{{"n", "a"}, {"k", 1}}, {{"n", "b"}, {"k", 2}}, {{"n", "c"}}}}};
  EXPECT_EQ(render("[{{ '  a b \n' | trim }}]{{ 'ab' | upper }}{{ 'AB' | lower }}{{ 'hello wORLD' | title }}{{ 'hELLO' | capitalize }}"),
            "[a b]ABabHello WorldHello");
  EXPECT_EQ(render("{{ xs | length }}{{ 'héllo' | length }}{{ xs | count }}{{ missing | length }}", ctx), "3530");
  EXPECT_EQ(render("{{ 12 | string }}{{ '42' | int + 1 }}{{ 'x' | int }}{{ 3.9 | int }}"), "124303");
  EXPECT_EQ(render("{{ missing | default('d') }}{{ '' | default('e') }}{{ '' | default('e', true) }}"), "de");
  EXPECT_EQ(render("{{ xs | map(attribute='n') | join(', ') }}|{{ xs | selectattr('k', 'defined') | map(attribute='n') | list }}", ctx),
            "a, b, c|['a', 'b']");
  EXPECT_EQ(render("{{ xs | rejectattr('k', 'equalto', 1) | map(attribute='n') | join }}", ctx), "bc");
  EXPECT_EQ(render("{{ xs | selectattr('n', 'equalto', 'b') | first }}", ctx), "{'n': 'b', 'k': 2}");
  EXPECT_EQ(render("{{ [1, 2, 3] | first }}{{ [1, 2, 3] | last }}{{ [1, 2, 3] | reverse | list }}{{ 'abc' | reverse }}{{ 'ab' | list }}"),
            "13[3, 2, 1]cba['a', 'b']");
  EXPECT_EQ(render("{{ 'a-b-b' | replace('b', 'c') }}{{ {'x': 1} | items | list }}{{ ['a', 'code', 'b'] | reject('equalto', 'code') | join(',') }}"),
            "a-c-c[['x', 1]]a,b");
  EXPECT_EQ(render("{{ '<b>' | safe }}{{ ['a', 'b'] | map('upper') | join }}{{ [3, 1, 2] | sort | join }}"), "<b>AB123");
}

TEST(chat_interpreter, tojson) {
  ojson ctx = {{"d", {{"name", "f"}, {"p", {{"z", 1}, {"a", {true, nullptr, 1.5, "é\n\"q\""}}}}, {"e", ojson::object()}}}};
  EXPECT_EQ(render("{{ d | tojson }}", ctx), R"({"name": "f", "p": {"z": 1, "a": [true, null, 1.5, "é\n\"q\""]}, "e": {}})");
  EXPECT_EQ(render("{{ d | tojson(indent=2) }}", ctx),
            "{\n  \"name\": \"f\",\n  \"p\": {\n    \"z\": 1,\n    \"a\": [\n      true,\n      null,\n      1.5,\n      \"é\\n\\\"q\\\"\"\n    ]\n  },\n  \"e\": {}\n}");
  EXPECT_EQ(render("{{ '<&>' | tojson }}"), "\"<&>\"");
}

TEST(chat_interpreter, methods) {
  EXPECT_EQ(render("[{{ '  x  '.strip() }}][{{ 'xxaxx'.lstrip('x') }}][{{ 'a\n\n'.rstrip('\n') }}][{{ ' a '.rstrip() }}]"), "[x][axx][a][ a]");
  EXPECT_EQ(render("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('x') }}{{ 'abc'.startswith(('x', 'a')) }}"), "TrueFalseTrue");
  EXPECT_EQ(render("{{ 'a</think>b'.split('</think>')[-1] }}{{ ' a  b '.split() }}{{ 'a,b,c'.split(',', 1) }}"), "b['a', 'b']['a', 'b,c']");
  EXPECT_EQ(render("{{ 'ab'.upper() }}{{ 'AB'.lower() }}{{ 'aXa'.replace('a', 'b') }}{{ 'ab cd'.title() }}"), "ABabbXbAb Cd");
  ojson ctx = {{"d", {{"a", 1}, {"b", 2}}}};
  EXPECT_EQ(render("{{ d.keys() | list }}{{ d.values() | list }}{{ d.get('a') }}{{ d.get('z') }}{{ d.get('z', 5) }}", ctx), "['a', 'b'][1, 2]1None5");
}

TEST(chat_interpreter, globals) {
  EXPECT_EQ(render("{{ range(3) | list }}{{ range(1, 7, 2) | list }}"), "[0, 1, 2][1, 3, 5]");
  EXPECT_EQ(render("{{ strftime_now('%d %b %Y') }}"), "26 Jul 2024");
  EXPECT_EQ(render("{% set ns = namespace(found=false) %}{% set ns.found = true %}{{ ns.found }}"), "True");
  EXPECT_EQ(error_of("{{ raise_exception('Roles must alternate') }}"), "Roles must alternate");
}

TEST(chat_interpreter, undefined_behaviour) {
  EXPECT_EQ(render("[{{ missing }}]{% if missing %}x{% endif %}{% if not missing %}y{% endif %}{{ missing is defined }}"), "[]yFalse");
  EXPECT_EQ(render("{{ m.nope is defined }}{{ m.nope }}", {{"m", ojson::object()}}), "False");
  EXPECT_EQ(render("{{ missing ~ 'x' }}"), "x");
}

TEST(chat_interpreter, errors_name_the_line) {
  EXPECT_EQ(error_of("a\n{{ x | frobnicate }}"), "chat template line 2: unknown filter 'frobnicate'");
  EXPECT_EQ(error_of("a\nb\n{% frob %}"), "chat template line 3: unsupported tag 'frob'");
  EXPECT_EQ(error_of("{% if x %}\nno end"), "chat template line 2: missing '{% endif %}' before the end of the template");
  EXPECT_EQ(error_of("\n{{ x is frob }}"), "chat template line 2: unknown test 'frob'");
  EXPECT_EQ(error_of("{{ 1 + }}"), "chat template line 1: expected an expression, got '}}'");
  EXPECT_EQ(error_of("\n\n{{ s() }}", {{"s", "str"}}), "chat template line 3: 's' is a string, not a function");
  EXPECT_EQ(error_of("{{ nope() }}"), "chat template line 1: 'nope' is undefined and cannot be called");
  EXPECT_EQ(error_of("{{ 'a' + 1 }}"), "chat template line 1: unsupported operand types for +: string and integer");
  EXPECT_EQ(error_of("{{ 'abc"), "chat template line 1: unterminated string");
  EXPECT_EQ(error_of("{{ x.y.z }}"), "chat template line 1: cannot read attribute 'y' of an undefined value");
  EXPECT_EQ(error_of("{% set s = 'x' %}{% set s.a = 1 %}"), "chat template line 1: cannot assign attribute 'a' of string 's' (only a namespace)");
  EXPECT_EQ(error_of("{{ 'x'.frob() }}"), "chat template line 1: unsupported method 'frob' of string");
}

TEST(chat_interpreter, apply_and_load) {
  chat_template t = chat_template::parse("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<a>{% endif %}{{ bos_token }}");
  ojson msgs = {{{"role", "user"}, {"content", "hi"}}};
  EXPECT_EQ(apply_chat_template(t, msgs, true, {{"bos_token", "<s>"}}), "<user>hi<a><s>");
  EXPECT_EQ(apply_chat_template(t, msgs, false, nullptr), "<user>hi");
  EXPECT_THROW(apply_chat_template(t, ojson::object(), false, nullptr), error);
  std::filesystem::path llama3 = std::filesystem::path(NANOFLOW_SOURCE_DIR) / "tests/data/tokenizers/llama3";
  std::optional<std::string> src = load_chat_template_source(llama3);
  ASSERT_TRUE(src.has_value());
  EXPECT_TRUE(src->starts_with("{% set loop_messages = messages %}"));
  EXPECT_EQ(load_chat_template_special_tokens(llama3)["bos_token"], "<|begin_of_text|>");
  EXPECT_FALSE(load_chat_template_source(std::filesystem::path(NANOFLOW_SOURCE_DIR) / "tests/data/tokenizers/mistral").has_value());
}

TEST(chat_interpreter, parse_once_render_fast) {
  chat_template t = chat_template::parse(*load_chat_template_source(std::filesystem::path(NANOFLOW_SOURCE_DIR) / "tests/data/tokenizers/qwen3"));
  ojson msgs = ojson::array();
  for (int i = 0; i < 10; ++i) msgs.push_back({{"role", i % 2 ? "assistant" : "user"}, {"content", "message number " + std::to_string(i)}});
  constexpr int num_renders = 200;
  auto start = std::chrono::steady_clock::now();
  size_t total = 0;
  for (int i = 0; i < num_renders; ++i) total += apply_chat_template(t, msgs, true, ojson::object()).size();
  double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / num_renders;
  std::printf("qwen3 template, 10 messages: %.1f us per render\n", us);
  EXPECT_GT(total, 0u);
}

}  // namespace
}  // namespace nf
