// Renders real chat templates over a set of conversations with @huggingface/jinja (the Jinja
// implementation transformers.js uses) and writes reference.json for the C++ tests.
// Run from the repository root: NODE_PATH=<dir>/node_modules node tests/data/chat/make_reference.mjs
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.NODE_PATH ?? ".", "noop.js"));
const { Template } = await import(require.resolve("@huggingface/jinja"));
const jinja_version = JSON.parse(readFileSync(path.join(process.env.NODE_PATH ?? ".", "@huggingface/jinja/package.json"), "utf8")).version;

// strftime_now() reads the clock: fix it at 2024-07-26 12:00 local time, as the C++ test does.
const RealDate = Date;
globalThis.Date = class extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(2024, 6, 26, 12, 0, 0);
    else super(...args);
  }
};

const dir = "tests/data/chat";
const from_config = (p) => JSON.parse(readFileSync(p, "utf8")).chat_template;
const templates = [
  { name: "llama3", source: from_config("tests/data/tokenizers/llama3/tokenizer_config.json"),
    vars: { bos_token: "<|begin_of_text|>", eos_token: "<|end_of_text|>" } },
  { name: "llama3_1-lenml", source: readFileSync(`${dir}/llama3_1-lenml.jinja`, "utf8"),
    vars: { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" } },
  { name: "llama3_2", source: readFileSync(`${dir}/llama3_2.jinja`, "utf8"),
    vars: { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" } },
  { name: "qwen3", source: from_config("tests/data/tokenizers/qwen3/tokenizer_config.json"),
    vars: { eos_token: "<|im_end|>" } },
  { name: "mistral_nemo", source: readFileSync(`${dir}/mistral_nemo.jinja`, "utf8"),
    vars: { bos_token: "<s>", eos_token: "</s>" } },
  { name: "deepseek_v3", source: readFileSync(`${dir}/deepseek_v3.jinja`, "utf8"),
    vars: { bos_token: "<｜begin▁of▁sentence｜>", eos_token: "<｜end▁of▁sentence｜>" } },
  { name: "gemma3", source: readFileSync(`${dir}/gemma3.jinja`, "utf8"),
    vars: { bos_token: "<bos>", eos_token: "<eos>" } },
];

const weather_tool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the current weather in a city",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", description: "City name, e.g. Paris" },
        days: { type: "integer", description: "Forecast length", enum: [1, 3, 7] },
      },
      required: ["city"],
    },
  },
};
const time_tool = {
  type: "function",
  function: { name: "get_time", description: "Current time for a timezone", parameters: { type: "object", properties: { tz: { type: "string" } }, required: [] } },
};

const conversations = [
  { name: "user_only", messages: [{ role: "user", content: "Hello!" }] },
  { name: "system_user", messages: [
    { role: "system", content: "You are a helpful assistant." },
    { role: "user", content: "What is 2 + 2?" }] },
  { name: "multi_turn", messages: [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Hi" },
    { role: "assistant", content: "Hello! How can I help?" },
    { role: "user", content: "Tell me a joke." },
    { role: "assistant", content: "Why did the GPU cross the road?" },
    { role: "user", content: "Why?" }] },
  { name: "unicode_and_whitespace", messages: [
    { role: "user", content: "  Ünïcödé: 日本語, emoji 🚀, quote \" and backslash \\ \n\n" },
    { role: "assistant", content: "\n  Réponse — ok  \n" },
    { role: "user", content: "tabs\tand\nnewlines" }] },
  { name: "empty_content", messages: [
    { role: "user", content: "" },
    { role: "assistant", content: "" },
    { role: "user", content: "" }] },
  { name: "tools_defined", messages: [
    { role: "system", content: "You can call tools." },
    { role: "user", content: "Weather in Paris?" }], tools: [weather_tool, time_tool] },
  { name: "tool_call_and_result", messages: [
    { role: "user", content: "Weather in Paris?" },
    { role: "assistant", content: "", tool_calls: [{ id: "call12345", type: "function", function: { name: "get_weather", arguments: { city: "Paris", days: 3 } } }] },
    { role: "tool", tool_call_id: "call12345", content: "{\"temp\": 21, \"sky\": \"clear\"}" },
    { role: "assistant", content: "It is 21 degrees and clear." },
    { role: "user", content: "Thanks" }], tools: [weather_tool] },
  { name: "non_alternating", messages: [
    { role: "user", content: "First" },
    { role: "user", content: "Second" }] },
  { name: "assistant_first", messages: [
    { role: "assistant", content: "I speak first" },
    { role: "user", content: "ok" }] },
  { name: "thinking", messages: [
    { role: "user", content: "Solve x+1=2" },
    { role: "assistant", content: "<think>\nSubtract one.\n</think>\n\nx = 1" },
    { role: "user", content: "And x+2=4?" }] },
  { name: "reasoning_content", messages: [
    { role: "user", content: "Hi" },
    { role: "assistant", content: "Hello", reasoning_content: "Greet back." },
    { role: "user", content: "Bye" }] },
  { name: "thinking_disabled", messages: [{ role: "user", content: "Quick answer" }], extra: { enable_thinking: false } },
];

const out = { reference: `@huggingface/jinja ${jinja_version}`, date: "strftime_now() at 2024-07-26 12:00 local time", templates: [] };
for (const t of templates) {
  const tmpl = new Template(t.source);
  const cases = [];
  for (const conv of conversations) {
    for (const add_generation_prompt of [false, true]) {
      const context = { ...t.vars, ...(conv.extra ?? {}) };
      if (conv.tools) context.tools = conv.tools;
      context.messages = conv.messages;
      context.add_generation_prompt = add_generation_prompt;
      const c = { name: `${conv.name}${add_generation_prompt ? "+gen" : ""}`, context };
      try {
        c.output = tmpl.render(structuredClone(context));
      } catch (e) {
        c.error = e.message;
        // A message the template itself raises (raise_exception) must match exactly; the renderer's
        // own type errors differ between implementations, only that there is an error must match.
        c.error_from_template = t.source.includes(e.message);
      }
      cases.push(c);
    }
  }
  out.templates.push({ name: t.name, source: t.source, cases });
}
writeFileSync(`${dir}/reference.json`, JSON.stringify(out, null, 1) + "\n");
for (const t of out.templates) {
  console.log(t.name, t.cases.map((c) => (c.error ? `${c.name}:ERR(${c.error.slice(0, 40)})` : c.name)).join(" "));
}
