// The endpoints with the official openai client: completions and chat,
// streaming and not, usage, stop strings, seeds, /v1/models, /health.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, modelName, tokenCount } from './lib.js';

let server, client;
before(async () => {
  server = await startServer(['--parallel', '2', '--max-tokens', '64']);
  client = new OpenAI({ baseURL: server.base, apiKey: 'unused', maxRetries: 0 });
});
after(async () => {
  const exit = await server.stop();
  assert.deepEqual(exit, { code: 0, signal: null }, 'SIGTERM: a clean exit\n' + server.log);
});

const prompt = 'The old man walked to the river and';

// Streams a request; returns the text, the finish reason, the usage and the chunks.
async function streamed(kind, params) {
  const stream = await (kind === 'chat' ? client.chat.completions : client.completions).create({ ...params, stream: true });
  let text = '', finish = null, usage = null, chunks = 0, role = null;
  for await (const c of stream) {
    chunks++;
    assert.equal(c.object, kind === 'chat' ? 'chat.completion.chunk' : 'text_completion');
    assert.equal(c.model, modelName);
    if (c.usage) usage = c.usage;
    if (c.choices.length === 0) continue;
    const ch = c.choices[0];
    if (kind === 'chat') {
      if (ch.delta.role) role = ch.delta.role;
      text += ch.delta.content ?? '';
    } else {
      text += ch.text;
    }
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  return { text, finish, usage, chunks, role };
}

test('GET /health', async () => {
  const r = await fetch(server.url + '/health');
  assert.equal(r.status, 200);
  const j = await r.json();
  assert.equal(j.status, 'ok');
  assert.equal(j.slots_total, 2);
});

test('GET /v1/models lists the model', async () => {
  const list = await client.models.list();
  const ids = [];
  for await (const m of list) ids.push(m.id);
  assert.deepEqual(ids, [modelName]);
});

test('completions: greedy, streaming text equals non-streaming, usage counts', async () => {
  const params = { model: modelName, prompt, max_tokens: 12, temperature: 0 };
  const r = await client.completions.create(params);
  assert.equal(r.object, 'text_completion');
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.choices.length, 1);
  const text = r.choices[0].text;
  assert.ok(text.length > 0);
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.equal(r.usage.prompt_tokens, await tokenCount(prompt));
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  if (r.choices[0].finish_reason === 'length') assert.equal(r.usage.completion_tokens, 12);
  assert.ok(r.usage.completion_tokens <= 12 && r.usage.completion_tokens > 0);

  const s = await streamed('completions', params);
  assert.equal(s.text, text);
  assert.equal(s.finish, r.choices[0].finish_reason);
  assert.ok(s.chunks >= 2);
  assert.equal(s.usage.prompt_tokens, r.usage.prompt_tokens);
  assert.equal(s.usage.completion_tokens, r.usage.completion_tokens);

  // again: the same text (the session's cache now holds the prompt: reused, same result)
  const again = await client.completions.create(params);
  assert.equal(again.choices[0].text, text);
});

test('completions: stream_options.include_usage sends a usage chunk with no choices', async () => {
  const stream = await client.completions.create({
    model: modelName, prompt, max_tokens: 5, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let last;
  for await (const c of stream) last = c;
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.completion_tokens, 5);
});

test('completions: a stop string ends the text before it', async () => {
  const full = (await client.completions.create({ model: modelName, prompt, max_tokens: 16, temperature: 0 })).choices[0].text;
  // a stop string from the middle of the greedy text
  const words = full.trim().split(/\s+/);
  assert.ok(words.length >= 3, full);
  const stop = ' ' + words[2];
  const cut = full.slice(0, full.indexOf(stop));
  const r = await client.completions.create({ model: modelName, prompt, max_tokens: 16, temperature: 0, stop: [stop] });
  assert.equal(r.choices[0].text, cut);
  assert.equal(r.choices[0].finish_reason, 'stop');
  const s = await streamed('completions', { model: modelName, prompt, max_tokens: 16, temperature: 0, stop });
  assert.equal(s.text, cut);
  assert.equal(s.finish, 'stop');
});

test('completions: a seed repeats the sampled text', async () => {
  const params = { model: modelName, prompt, max_tokens: 16, temperature: 1, top_p: 0.95, seed: 42 };
  const a = await client.completions.create(params);
  const b = await client.completions.create(params);
  assert.equal(a.choices[0].text, b.choices[0].text);
  const s = await streamed('completions', params);
  assert.equal(s.text, a.choices[0].text);
});

test('chat: greedy, streaming text equals non-streaming', async () => {
  const messages = [
    { role: 'system', content: 'A story.' },
    { role: 'user', content: 'Tell me about the sea.' },
  ];
  const params = { model: modelName, messages, max_tokens: 16, temperature: 0 };
  const r = await client.chat.completions.create(params);
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  const m = r.choices[0].message;
  assert.equal(m.role, 'assistant');
  assert.equal(typeof m.content, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(!m.content.includes('\nUser:'), 'the reply ends before the next turn');
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);

  const s = await streamed('chat', params);
  assert.equal(s.role, 'assistant');
  assert.equal(s.text, m.content);
  assert.equal(s.finish, r.choices[0].finish_reason);
  assert.equal(s.usage.completion_tokens, r.usage.completion_tokens);
  assert.equal(s.usage.prompt_tokens, r.usage.prompt_tokens);
});

test('chat: a conversation continues (prefix reused)', async () => {
  const messages = [{ role: 'user', content: 'Where is the boat?' }];
  const first = await client.chat.completions.create({ model: modelName, messages, max_tokens: 8, temperature: 0 });
  messages.push(first.choices[0].message, { role: 'user', content: 'And then?' });
  const second = await client.chat.completions.create({ model: modelName, messages, max_tokens: 8, temperature: 0 });
  assert.ok(second.usage.prompt_tokens > first.usage.prompt_tokens);
  assert.ok(second.usage.prompt_tokens_details.cached_tokens >= 0);
});
