// Bad and hostile requests: each gets OpenAI's error object with the right
// status, and the server keeps answering. Disconnects, a full queue, the API key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, modelName, post, assertErrorObject, slow } from './lib.js';

let server;
before(async () => {
  server = await startServer(['--parallel', '1', '--queue', '1', '--max-body', '4096', '--max-tokens', '2000',
                              '--max-prompt', '64', '--threads', '1', '-v']);
});
after(async () => {
  const exit = await server.stop();
  assert.deepEqual(exit, { code: 0, signal: null }, 'SIGTERM: a clean exit\n' + server.log);
});

const chat = (extra) => ({ model: modelName, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4, ...extra });

test('a body over --max-body: 413', async () => {
  const r = await post(server, '/v1/completions', { model: modelName, prompt: 'x'.repeat(10000) });
  assertErrorObject(assert, r, 413);
});

test('malformed JSON: 400', async () => {
  assertErrorObject(assert, await post(server, '/v1/chat/completions', '{"model": "x", "messages": ['), 400);
  assertErrorObject(assert, await post(server, '/v1/chat/completions', '[1, 2]'), 400);
  assertErrorObject(assert, await post(server, '/v1/completions', ''), 400);
});

test('wrong types: 400 naming the parameter', async () => {
  assertErrorObject(assert, await post(server, '/v1/chat/completions', chat({ temperature: 'hot' })), 400, 'temperature');
  assertErrorObject(assert, await post(server, '/v1/chat/completions', chat({ max_tokens: 1.5 })), 400, 'max_tokens');
  assertErrorObject(assert, await post(server, '/v1/chat/completions', chat({ stream: 'yes' })), 400, 'stream');
  assertErrorObject(assert, await post(server, '/v1/chat/completions', chat({ stop: 7 })), 400, 'stop');
  assertErrorObject(assert, await post(server, '/v1/chat/completions', chat({ messages: 'hi' })), 400, 'messages');
  assertErrorObject(assert, await post(server, '/v1/chat/completions', chat({ messages: [{ role: 'user', content: 3 }] })),
                    400, 'messages[0].content');
  assertErrorObject(assert, await post(server, '/v1/completions', { model: modelName, prompt: { a: 1 } }), 400, 'prompt');
  assertErrorObject(assert, await post(server, '/v1/chat/completions', chat({ temperature: 5 })), 400, 'temperature');
  assertErrorObject(assert, await post(server, '/v1/chat/completions', chat({ top_p: 0 })), 400, 'top_p');
});

test('missing messages, bad roles, n != 1, empty prompt: 400', async () => {
  assertErrorObject(assert, await post(server, '/v1/chat/completions', { model: modelName }), 400, 'messages');
  assertErrorObject(assert, await post(server, '/v1/chat/completions', chat({ messages: [] })), 400, 'messages');
  assertErrorObject(assert, await post(server, '/v1/chat/completions', chat({ messages: [{ role: 'wizard', content: 'x' }] })),
                    400, 'messages[0].role');
  assertErrorObject(assert, await post(server, '/v1/chat/completions', chat({ n: 2 })), 400, 'n');
  assertErrorObject(assert, await post(server, '/v1/completions', { model: modelName }), 400, 'prompt');
});

test('unknown model: 404 model_not_found', async () => {
  const e = assertErrorObject(assert, await post(server, '/v1/chat/completions', chat({ model: 'gpt-9' })), 404, 'model');
  assert.equal(e.code, 'model_not_found');
  const client = new OpenAI({ baseURL: server.base, apiKey: 'x', maxRetries: 0 });
  await assert.rejects(client.chat.completions.create(chat({ model: 'gpt-9' })), (err) => err.status === 404);
});

test('limits: prompt over --max-prompt, max_tokens over --max-tokens: 400 naming the limit', async () => {
  const long = await post(server, '/v1/completions', { model: modelName, prompt: 'word '.repeat(200), max_tokens: 1 });
  const e = assertErrorObject(assert, long, 400, 'prompt');
  assert.equal(e.code, 'context_length_exceeded');
  assert.match(e.message, /at most 64/);
  const many = assertErrorObject(assert, await post(server, '/v1/completions', { model: modelName, prompt: 'a', max_tokens: 5000 }),
                                 400, 'max_tokens');
  assert.match(many.message, /at most 2000/);
});

test('unknown endpoint: 404 with the error object', async () => {
  const r = await fetch(server.url + '/v1/nothing');
  assert.equal(r.status, 404);
  assert.ok((await r.json()).error);
});

// A long streamed reply: ignore_eos keeps it going to max_tokens.
const long = { model: modelName, prompt: 'Once upon a time', max_tokens: 2000, temperature: 0, ignore_eos: true, stream: true };

test('a client that leaves mid-stream frees its session at once', async () => {
  const ac = new AbortController();
  const res = await fetch(server.url + '/v1/completions', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(long), signal: ac.signal,
  });
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  await reader.read();  // the first chunk
  ac.abort();
  const m = await server.waitLog(/completion \(stream\): \d+ prompt tokens \(\d+ cached\), (\d+) generated, cancelled, client gone/);
  assert.ok(Number(m[1]) < 2000, 'cancelled before max_tokens: ' + m[0]);
  // the one session is free: the next request runs at once
  const t0 = Date.now();
  const r = await post(server, '/v1/completions', { model: modelName, prompt: 'Hello', max_tokens: 4 });
  assert.equal(r.status, 200, r.text);
  assert.ok(Date.now() - t0 < 5000 * slow);
  const h = await (await fetch(server.url + '/health')).json();
  assert.equal(h.slots_idle, 1);
});

test('a full queue: 503 with the error object; the others succeed', async () => {
  // --parallel 1 --queue 1: of 5 long requests at once, one runs, one waits, the others get 503.
  const one = () => post(server, '/v1/completions', { ...long, max_tokens: 300, stream: false });
  const rs = await Promise.all([one(), one(), one(), one(), one()]);
  const busy = rs.filter((r) => r.status === 503);
  const ok = rs.filter((r) => r.status === 200);
  assert.ok(busy.length >= 1, 'some got 503: ' + rs.map((r) => r.status));
  assert.equal(busy.length + ok.length, 5, rs.map((r) => r.status).join(' '));
  for (const r of busy) assert.equal(assertErrorObject(assert, r, 503).code, 'server_busy');
  for (const r of ok) {
    assert.equal(r.json.choices[0].finish_reason, 'length');
    assert.ok(r.json.usage.completion_tokens > 0);
  }
  // and then the server answers as before
  assert.equal((await post(server, '/v1/completions', { model: modelName, prompt: 'Hi', max_tokens: 2 })).status, 200);
});

test('--timeout: a reply that runs past it ends (finish_reason length)', async () => {
  const brief = await startServer(['--timeout', '0.001', '--threads', '1']);
  try {
    const body = { model: modelName, prompt: 'Once upon a time', max_tokens: 200, temperature: 0, ignore_eos: true };
    const r = await post(brief, '/v1/completions', body);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].finish_reason, 'length');
    assert.ok(r.json.usage.completion_tokens < 10, 'cut short: ' + r.json.usage.completion_tokens);
    const client = new OpenAI({ baseURL: brief.base, apiKey: 'x', maxRetries: 0 });
    let chunks = 0, finish = null;
    for await (const c of await client.completions.create({ ...body, stream: true })) {
      chunks++;
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(finish, 'length');
    assert.ok(chunks < 10, 'cut short: ' + chunks + ' chunks');
  } finally {
    assert.deepEqual(await brief.stop(), { code: 0, signal: null });
  }
});

test('--api-key: 401 without the key or with a wrong one, /health open', async () => {
  const keyed = await startServer(['--api-key', 'sesame']);
  try {
    const r = await post(keyed, '/v1/chat/completions', chat({}));
    assert.equal(assertErrorObject(assert, r, 401).code, 'invalid_api_key');
    assertErrorObject(assert, await post(keyed, '/v1/chat/completions', chat({}), { authorization: 'Bearer nope' }), 401);
    assert.equal((await fetch(keyed.url + '/v1/models')).status, 401);
    assert.equal((await fetch(keyed.url + '/health')).status, 200);
    const wrong = new OpenAI({ baseURL: keyed.base, apiKey: 'nope', maxRetries: 0 });
    await assert.rejects(wrong.chat.completions.create(chat({})), (err) => err.status === 401);
    const right = new OpenAI({ baseURL: keyed.base, apiKey: 'sesame', maxRetries: 0 });
    const ok = await right.chat.completions.create(chat({}));
    assert.equal(ok.choices[0].message.role, 'assistant');
  } finally {
    assert.deepEqual(await keyed.stop(), { code: 0, signal: null });
  }
});
