// Drives a running nanoflow server (the fake engine of the server tests) with the official openai client:
// whole and streamed completions and chats, n > 1, logprobs, include_usage, and an error the client must
// raise. Usage: node openai_client_check.mjs BASE_URL EXPECTED_JSON_FILE; exits non-zero on any mismatch.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import OpenAI from "openai";

const [baseURL, expectedFile] = process.argv.slice(2);
const expected = JSON.parse(readFileSync(expectedFile, "utf8"));
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 20000 });

const completion = await client.completions.create({ model: "tiny", prompt: expected.prompt, max_tokens: 8 });
assert.equal(completion.object, "text_completion");
assert.equal(completion.choices[0].text, expected.completion_text);
assert.equal(completion.choices[0].finish_reason, "length");
assert.equal(completion.usage.completion_tokens, 8);

let streamed = "";
let usage = null;
const stream = await client.completions.create({
  model: "tiny", prompt: expected.prompt, max_tokens: 8, stream: true, stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  for (const choice of chunk.choices) streamed += choice.text;
}
assert.equal(streamed, expected.completion_text);
assert.equal(usage.total_tokens, usage.prompt_tokens + 8);

const messages = [{ role: "user", content: expected.chat_user }];
const chat = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 6, n: 2, logprobs: true, top_logprobs: 2 });
assert.equal(chat.choices.length, 2);
assert.equal(chat.choices[1].index, 1);
assert.equal(chat.choices[0].message.role, "assistant");
assert.equal(chat.choices[0].message.content, expected.chat_text);
assert.equal(chat.choices[0].logprobs.content.length, 6);
assert.equal(chat.choices[0].logprobs.content[0].top_logprobs.length, 2);

let chatStreamed = "";
const chatStream = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 6, stream: true });
for await (const chunk of chatStream) chatStreamed += chunk.choices[0]?.delta?.content ?? "";
assert.equal(chatStreamed, expected.chat_text);

const models = await client.models.list();
assert.equal(models.data[0].id, "tiny");

await assert.rejects(client.chat.completions.create({ model: "tiny", messages: [] }), (error) => {
  assert.equal(error.status, 400);
  return true;
});
await assert.rejects(client.completions.create({ model: "other", prompt: "x" }), (error) => {
  assert.equal(error.status, 404);
  return true;
});
console.log("openai client check: ok");
