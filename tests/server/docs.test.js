// docs/embedding.md quotes the snippets under tests/server/snippets verbatim, and
// both run: curl and the openai client give the same greedy reply.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startServer, root } from './lib.js';

const run = promisify(execFile);
const snippets = path.join(root, 'tests/server/snippets');
const doc = readFileSync(path.join(root, 'docs/embedding.md'), 'utf8');

let server;
before(async () => {
  server = await startServer(['--max-tokens', '64']);
});
after(async () => {
  assert.deepEqual(await server.stop(), { code: 0, signal: null });
});

test('docs/embedding.md quotes each snippet whole', () => {
  for (const f of ['chat-curl.sh', 'chat-openai.mjs']) {
    const text = readFileSync(path.join(snippets, f), 'utf8');
    assert.ok(doc.includes('```' + (f.endsWith('.sh') ? 'sh' : 'js') + '\n' + text + '```'), `docs/embedding.md quotes ${f}`);
  }
});

test('the curl and openai snippets run and agree', async () => {
  const env = { ...process.env, NCAS_URL: server.url };
  const curl = await run('sh', [path.join(snippets, 'chat-curl.sh')], { env });
  const reply = JSON.parse(curl.stdout);
  const text = reply.choices[0].message.content;
  assert.ok(text.length > 0);
  const js = await run(process.execPath, [path.join(snippets, 'chat-openai.mjs')], { env, cwd: snippets });
  assert.equal(js.stdout, text + '\n');
});
