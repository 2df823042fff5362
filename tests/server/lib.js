// Starting `ncas serve` for the tests: the binary is $NCAS_CLI (default: the
// release build's), the model $NCAS_MODEL (default: models/demo-q8_0.gguf).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const cli = process.env.NCAS_CLI || path.join(root, 'build/release/examples/ncas');
export const modelFile = process.env.NCAS_MODEL || path.join(root, 'models/demo-q8_0.gguf');
export const modelName = path.basename(modelFile, '.gguf');
// Under ASan everything runs several times slower: the tests scale their waits by this.
export const slow = Number(process.env.NCAS_SERVER_SLOW || 1);

// Starts the server on a free port (--port 0; it prints the one it got) and
// resolves once it listens. stderr is kept in `log`.
export async function startServer(args = []) {
  const proc = spawn(cli, ['serve', '--model', modelFile, '--port', '0', ...args], {
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  const server = { proc, log: '', url: null, exited: null };
  server.exit = new Promise((resolve) => proc.on('exit', (code, signal) => resolve((server.exited = { code, signal }))));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('ncas serve did not start in time:\n' + server.log)), 60000 * slow);
    proc.stderr.on('data', (d) => {
      server.log += d.toString();
      const m = server.log.match(/on (http:\/\/[0-9.]+:\d+)/);
      if (m && !server.url) {
        server.url = m[1];
        clearTimeout(timer);
        resolve();
      }
    });
    server.exit.then(() => {
      clearTimeout(timer);
      reject(new Error('ncas serve exited before listening:\n' + server.log));
    });
  });
  server.base = server.url + '/v1';
  // SIGTERM, then the exit status must be 0 within a few seconds.
  server.stop = async () => {
    if (server.exited) return server.exited;
    proc.kill('SIGTERM');
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('no exit after SIGTERM:\n' + server.log)), 10000 * slow);
    });
    try {
      const exited = await Promise.race([server.exit, timeout]);
      // ASan, LeakSanitizer and UBSan reports (under the asan build) fail the test
      if (/Sanitizer|runtime error:/.test(server.log)) throw new Error('sanitizer report:\n' + server.log);
      return exited;
    } finally {
      clearTimeout(timer);  // a pending timer would keep the test process alive
    }
  };
  // Resident memory in KiB (VmRSS of /proc/PID/status).
  server.rssKiB = () => Number(readFileSync(`/proc/${proc.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]);
  // Resolves when stderr has a line matching re.
  server.waitLog = (re, ms = 10000 * slow) =>
    new Promise((resolve, reject) => {
      const t0 = Date.now();
      const poll = () => {
        const m = server.log.match(re);
        if (m) return resolve(m);
        if (Date.now() - t0 > ms) return reject(new Error(`no ${re} in the server's log:\n${server.log}`));
        setTimeout(poll, 20);
      };
      poll();
    });
  return server;
}

// POST a raw body; resolves {status, json}.
export async function post(server, route, body, headers = {}) {
  const res = await fetch(server.url + route, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, json, text };
}

// The OpenAI error object: {"error":{"message","type","param","code"}}.
export function assertErrorObject(assert, r, status, param) {
  assert.equal(r.status, status, r.text);
  assert.ok(r.json && r.json.error, 'an error object: ' + r.text);
  const e = r.json.error;
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 0);
  assert.equal(typeof e.type, 'string');
  assert.ok('param' in e && 'code' in e, 'param and code present (null or a string)');
  if (param !== undefined) assert.equal(e.param, param);
  return e;
}

// The token count `ncas tokenize` gives for text (BOS included, as the server's prompt).
export function tokenCount(text) {
  return new Promise((resolve, reject) => {
    const p = spawn(cli, ['tokenize', '--model', modelFile, '--bos', text], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out).length) : reject(new Error('ncas tokenize failed'))));
  });
}
