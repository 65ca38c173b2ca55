// The official openai Node SDK against a running gateway: chat, streamed chat, Responses.
// Usage: THRIFTY_URL=http://127.0.0.1:PORT/v1 THRIFTY_KEY=sk-... node client.mjs MODEL
// Prints one JSON object with what each call returned; tests/clients/test_node_sdk.py checks it.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.THRIFTY_URL, apiKey: process.env.THRIFTY_KEY, maxRetries: 0 });
const model = process.argv[2];
const out = {};

const chat = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Weather?" }] });
out.chat = { text: chat.choices[0].message.content, finish: chat.choices[0].finish_reason, usage: chat.usage };

const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "Weather?" }],
  stream: true,
  stream_options: { include_usage: true },
});
const pieces = [];
let streamUsage = null;
for await (const chunk of stream) {
  if (chunk.choices.length && chunk.choices[0].delta.content) pieces.push(chunk.choices[0].delta.content);
  if (chunk.usage) streamUsage = chunk.usage;
}
out.stream = { pieces, usage: streamUsage };

const response = await client.responses.create({ model, input: "Weather?", instructions: "Be brief." });
out.response = { id: response.id, status: response.status, text: response.output_text, usage: response.usage };
const again = await client.responses.retrieve(response.id);
out.retrieved = again.output_text;

const events = [];
const responseStream = await client.responses.create({ model, input: "Weather?", stream: true });
for await (const event of responseStream) events.push(event.type);
out.responseEvents = events;

try {
  await client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "hi" }] });
  out.unknownModel = "answered";
} catch (error) {
  out.unknownModel = { status: error.status, param: error.param ?? null, type: error.type ?? null };
}

process.stdout.write(JSON.stringify(out));
