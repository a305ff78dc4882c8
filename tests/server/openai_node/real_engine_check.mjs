// Drives `nanoflow serve` running the real engine with the official openai client: greedy completions (whole
// and streamed) must equal the text `nanoflow generate` printed for the same prompt, and a streamed chat must
// equal the whole one. Prints the streamed chat chunks it received.
// Usage: node real_engine_check.mjs BASE_URL EXPECTED_JSON_FILE; exits non-zero on any mismatch.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import OpenAI from "openai";

const [baseURL, expectedFile] = process.argv.slice(2);
const expected = JSON.parse(readFileSync(expectedFile, "utf8"));
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 60000 });
const greedy = { temperature: 0, ignore_eos: true };

const whole = await client.completions.create({ model: "tiny", prompt: expected.prompt, max_tokens: 12, ...greedy });
assert.equal(whole.choices[0].text, expected.completion_text);
assert.equal(whole.usage.completion_tokens, 12);

let streamed = "";
const stream = await client.completions.create({ model: "tiny", prompt: expected.prompt, max_tokens: 12, stream: true, ...greedy });
for await (const chunk of stream) for (const choice of chunk.choices) streamed += choice.text;
assert.equal(streamed, expected.completion_text);

const messages = [{ role: "user", content: "Write one word." }];
const chat = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 6, ...greedy });
let chatStreamed = "";
const chunks = [];
const chatStream = await client.chat.completions.create({
  model: "tiny", messages, max_tokens: 6, stream: true, stream_options: { include_usage: true }, ...greedy,
});
for await (const chunk of chatStream) {
  chunks.push(JSON.stringify(chunk));
  chatStreamed += chunk.choices[0]?.delta?.content ?? "";
}
assert.equal(chatStreamed, chat.choices[0].message.content);
assert.equal(chat.usage.completion_tokens, 6);
console.log("streamed chat chunks received by the openai client:");
for (const line of chunks) console.log(line);
console.log("openai client against the real engine: ok");
