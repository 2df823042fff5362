// A bounded load test: N requests (default 200; $NCAS_SERVER_LOAD) at 8 at a
// time over 4 sessions, chat and completions, streaming and not. Every reply
// must be the greedy reference text of its prompt, none may fail, and the
// server's resident memory must stay steady.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, modelName } from './lib.js';

const total = Number(process.env.NCAS_SERVER_LOAD || 200);
const concurrency = 8;
let server, client;
before(async () => {
  server = await startServer(['--parallel', '4', '--queue', '16', '--max-tokens', '16']);
  client = new OpenAI({ baseURL: server.base, apiKey: 'unused', maxRetries: 0 });
});
after(async () => {
  assert.deepEqual(await server.stop(), { code: 0, signal: null }, server.log);
});

const prompts = ['The river', 'Once upon a time', 'In the morning the king', 'She opened the door and'];

async function run(i) {
  const p = prompts[i % prompts.length];
  const chat = (i >> 2) % 2 === 1, stream = (i >> 3) % 2 === 1;
  const params = chat
    ? { model: modelName, messages: [{ role: 'user', content: p }], max_tokens: 8, temperature: 0 }
    : { model: modelName, prompt: p, max_tokens: 8, temperature: 0 };
  const api = chat ? client.chat.completions : client.completions;
  let text = '', finish = null, usage = null;
  if (stream) {
    for await (const c of await api.create({ ...params, stream: true })) {
      if (c.usage) usage = c.usage;
      if (!c.choices.length) continue;
      text += chat ? c.choices[0].delta.content ?? '' : c.choices[0].text;
      finish = c.choices[0].finish_reason ?? finish;
    }
  } else {
    const r = await api.create(params);
    text = chat ? r.choices[0].message.content : r.choices[0].text;
    finish = r.choices[0].finish_reason;
    usage = r.usage;
  }
  assert.ok(['stop', 'length'].includes(finish), `request ${i}: finish_reason ${finish}`);
  assert.ok(usage && usage.completion_tokens <= 8 && usage.prompt_tokens > 0, `request ${i}: usage ${JSON.stringify(usage)}`);
  return { key: `${chat}:${p}`, text };
}

async function pool(n, offset) {
  const out = [];
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) {
      const i = next++;
      out[i] = await run(offset + i);
    }
  }));
  return out;
}

test(`${total} requests at ${concurrency} concurrent: all valid, memory steady`, async () => {
  // warm up (every session, the allocator's arenas), and learn each prompt's greedy text
  const reference = new Map();
  for (const r of await pool(32, 0)) {
    if (!reference.has(r.key)) reference.set(r.key, r.text);
    assert.equal(r.text, reference.get(r.key), 'the same greedy text on every session: ' + r.key);
  }
  const rss0 = server.rssKiB();
  const t0 = Date.now();
  const results = await pool(total, 32);
  const seconds = (Date.now() - t0) / 1000;
  const rss1 = server.rssKiB();
  assert.equal(results.length, total);
  for (const r of results) assert.equal(r.text, reference.get(r.key), 'greedy text under load: ' + r.key);
  const health = await (await fetch(server.url + '/health')).json();
  assert.equal(health.slots_idle, 4);
  assert.equal(health.queued, 0);
  const growth = rss1 - rss0;
  console.log(`# load: ${total} requests in ${seconds.toFixed(1)} s; RSS ${rss0} -> ${rss1} KiB (${growth >= 0 ? '+' : ''}${growth})`);
  assert.ok(growth < 16 * 1024, `RSS grew by ${growth} KiB (${rss0} -> ${rss1}) over ${total} requests`);
});
