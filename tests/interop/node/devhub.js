'use strict';
// Starts devhub on ephemeral ports for the Node SDK tests and talks to its HTTPS service API.
// The Node SDK takes the MQTT port from `GatewayHostName=localhost:PORT`, so no fixed port
// (and no network namespace) is needed here.

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');

const INTEROP = path.resolve(__dirname, '..');
const REPO = path.resolve(INTEROP, '..', '..');
const MANIFEST = path.join(INTEROP, 'manifest.json');
const LOG_DIR = process.env.INTEROP_LOG_DIR || path.join(REPO, 'tests', 'out', 'interop');
const BIN = process.env.DEVHUB_BIN || path.join(REPO, 'target', 'debug', 'devhub');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves with the promise's value, or rejects after `ms` naming `what`. */
function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `fn` (async, returns a truthy value when done) every 100 ms for up to `ms`. */
async function waitFor(what, ms, fn) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(100);
  }
}

class DevHub {
  constructor(stateDir, ready, proc, logPath) {
    this.stateDir = stateDir;
    this.ready = ready;
    this.proc = proc;
    this.logPath = logPath;
    this.deviceId = ready.device_id;
    this.hubHostName = ready.hub_host_name;
    this.caPem = fs.readFileSync(ready.ca_file, 'utf8');
  }

  static async start(name) {
    if (!fs.existsSync(BIN)) throw new Error(`devhub binary not found at ${BIN} (set DEVHUB_BIN)`);
    fs.mkdirSync(LOG_DIR, { recursive: true });
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), `devhub-interop-${name}-`));
    const readyFile = path.join(stateDir, 'ready-file.json');
    const logPath = path.join(LOG_DIR, `devhub-${name}.log`);
    const log = fs.openSync(logPath, 'w');
    const proc = spawn(BIN, ['run', '--manifest', MANIFEST, '--state-dir', stateDir,
      '--ready-file', readyFile, '--mqtt-port', '0', '--https-port', '0', '--log', 'debug'],
    { stdio: ['ignore', log, log], env: { ...process.env, NO_COLOR: '1' } });
    fs.closeSync(log);
    let exited = null;
    proc.on('exit', (code) => { exited = code; });
    await waitFor('devhub ready file', 60000, async () => {
      if (exited !== null) {
        throw new Error(`devhub exited with ${exited}:\n${fs.readFileSync(logPath, 'utf8').slice(-3000)}`);
      }
      return fs.existsSync(readyFile);
    });
    return new DevHub(stateDir, JSON.parse(fs.readFileSync(readyFile, 'utf8')), proc, logPath);
  }

  async stop() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      const done = new Promise((r) => this.proc.once('exit', r));
      this.proc.kill('SIGTERM');
      try {
        await within(15000, 'devhub stop', done);
      } catch (e) {
        this.proc.kill('SIGKILL');
      }
    }
    fs.rmSync(this.stateDir, { recursive: true, force: true });
  }

  logTail(n = 60) {
    try {
      return fs.readFileSync(this.logPath, 'utf8').split('\n').slice(-n).join('\n');
    } catch (e) {
      return '';
    }
  }

  /** `devhub connection-string MODULE`, with the MQTT port the Node SDK reads from GatewayHostName. */
  connectionString(module) {
    const cs = execFileSync(BIN, ['connection-string', module, '--state-dir', this.stateDir],
      { encoding: 'utf8', timeout: 30000 }).trim();
    if (!/;GatewayHostName=localhost(;|$)/.test(cs)) throw new Error(`unexpected connection string shape for ${module}`);
    return cs.replace(/;GatewayHostName=localhost(;|$)/, `;GatewayHostName=localhost:${this.ready.mqtt_tls_port}$1`);
  }

  /** `devhub env MODULE` as an object (the `export K='V'` lines). */
  env(module) {
    const out = execFileSync(BIN, ['env', module, '--state-dir', this.stateDir],
      { encoding: 'utf8', timeout: 30000 });
    const env = {};
    for (const line of out.split('\n')) {
      const m = /^export ([A-Za-z_][A-Za-z0-9_]*)='(.*)'$/.exec(line);
      if (m) env[m[1]] = m[2].replace(/'\\''/g, "'");
    }
    return env;
  }

  /** HTTPS request to devhub's API; resolves {status, body (parsed JSON or null), text}. */
  request(method, urlPath, body) {
    const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
    return within(30000, `${method} ${urlPath}`, new Promise((resolve, reject) => {
      const req = https.request({
        host: 'localhost', port: this.ready.https_port, method, path: urlPath, ca: this.caPem,
        headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {},
      }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed = null;
          try { parsed = text ? JSON.parse(text) : null; } catch (e) { /* not JSON */ }
          resolve({ status: res.statusCode, body: parsed, text });
        });
      });
      req.on('error', reject);
      if (data) req.write(data);
      req.end();
    }));
  }

  twinPath(module) {
    return `/twins/${encodeURIComponent(this.deviceId)}/modules/${encodeURIComponent(module)}?api-version=2021-04-12`;
  }

  async getTwin(module) {
    const r = await this.request('GET', this.twinPath(module));
    if (r.status !== 200) throw new Error(`GET twin ${module}: ${r.status} ${r.text}`);
    return r.body;
  }

  async patchDesired(module, desired) {
    const r = await this.request('PATCH', this.twinPath(module), { properties: { desired } });
    if (r.status !== 200) throw new Error(`PATCH twin ${module}: ${r.status} ${r.text}`);
    return r.body;
  }

  invoke(module, methodName, payload, responseTimeout = 10, connectTimeout = 10) {
    return this.request('POST',
      `/twins/${encodeURIComponent(this.deviceId)}/modules/${encodeURIComponent(module)}/methods?api-version=2021-04-12`,
      { methodName, payload, responseTimeoutInSeconds: responseTimeout, connectTimeoutInSeconds: connectTimeout });
  }

  async upstream() {
    const r = await this.request('GET', '/devhub/upstream');
    if (r.status !== 200) throw new Error(`GET /devhub/upstream: ${r.status} ${r.text}`);
    return r.body;
  }

  async status() {
    const r = await this.request('GET', '/devhub/status');
    if (r.status !== 200) throw new Error(`GET /devhub/status: ${r.status} ${r.text}`);
    return r.body;
  }

  /** Waits until devhub lists `filter` among the module's subscriptions. */
  waitSubscribed(module, filter, ms = 15000) {
    return waitFor(`${module} subscribed to ${filter}`, ms, async () => {
      const subs = (await this.status()).subscriptions || {};
      return (subs[`${this.deviceId}/${module}`] || []).includes(filter);
    });
  }
}

module.exports = { DevHub, within, waitFor, sleep };
