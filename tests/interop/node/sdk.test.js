'use strict';
// Microsoft's Node SDK (azure-iot-device + azure-iot-device-mqtt) modules against devhub:
// routed messages, twins, direct methods. Run: node --test tests/interop/node/

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { ModuleClient, Message } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { DevHub, within, waitFor, sleep } = require('./devhub');

const STEP_MS = 15000; // any single wait
const TEST_MS = 60000; // any single test

let hub;
const clients = [];

async function connect(module) {
  const client = ModuleClient.fromConnectionString(hub.connectionString(module), Mqtt);
  clients.push(client);
  await client.setOptions({ ca: hub.caPem });
  await within(STEP_MS, `${module} open`, client.open());
  return client;
}

async function closeAll() {
  while (clients.length) {
    const c = clients.pop();
    try {
      await within(STEP_MS, 'close', c.close());
    } catch (e) { /* best effort */ }
  }
}

/** A queue fed by events; `next()` waits for the next item (with a timeout). */
function eventQueue() {
  const items = [];
  const waiters = [];
  return {
    push(item) {
      const w = waiters.shift();
      if (w) w(item); else items.push(item);
    },
    next(what, ms = STEP_MS) {
      if (items.length) return Promise.resolve(items.shift());
      return within(ms, what, new Promise((r) => waiters.push(r)));
    },
    get length() { return items.length; },
  };
}

function propsOf(msg) {
  const out = {};
  for (let i = 0; i < msg.properties.count(); i++) {
    const p = msg.properties.getItem(i);
    out[p.key] = p.value;
  }
  return out;
}

function strip(obj) {
  const out = {};
  for (const [k, v] of Object.entries(obj)) if (k !== '$version' && k !== '$metadata') out[k] = v;
  return out;
}

const CUSTOM = {
  unit: 'celsius',
  'odd key': 'a b/c&d=e%f+g?h#i',
  unicode: 'temp\u00e9rature \u2713',
};

describe('Node SDK modules on devhub', { timeout: 200000 }, () => {
  before(async () => { hub = await DevHub.start('node'); });
  after(async () => {
    await closeAll();
    if (hub) await hub.stop();
  });

  // Prints devhub's log when a test fails (the assertion alone rarely says why).
  async function withLog(fn) {
    try {
      await fn();
    } catch (e) {
      e.message += `\n--- devhub log (tail) ---\n${hub.logTail()}`;
      throw e;
    } finally {
      await closeAll();
    }
  }

  it('routes an output message to another module input with its properties', { timeout: TEST_MS }, () => withLog(async () => {
    const filter = await connect('nfilter');
    const sensor = await connect('nsensor');
    const received = eventQueue();
    filter.on('inputMessage', (inputName, msg) => {
      received.push({ inputName, msg });
      filter.complete(msg, () => {});
    });
    await hub.waitSubscribed('nfilter', `devices/${hub.deviceId}/modules/nfilter/inputs/#`);

    const body = JSON.stringify({ temperature: 21.5 });
    const msg = new Message(body);
    msg.messageId = 'node-msg-1';
    msg.correlationId = 'node-corr-1';
    msg.contentType = 'application/json';
    msg.contentEncoding = 'utf-8';
    for (const [k, v] of Object.entries(CUSTOM)) msg.properties.add(k, v);
    await within(STEP_MS, 'sendOutputEvent', sensor.sendOutputEvent('temperature', msg));

    const { inputName, msg: got } = await received.next('routed message');
    assert.equal(inputName, 'input1');
    assert.equal(got.data.toString('utf8'), body);
    assert.equal(got.messageId, 'node-msg-1');
    assert.equal(got.correlationId, 'node-corr-1');
    assert.equal(got.contentType, 'application/json');
    assert.equal(got.contentEncoding, 'utf-8');
    // Node keeps $.cdid/$.cmid (added by the hub) as application properties.
    assert.deepEqual(propsOf(got), { ...CUSTOM, '$.cdid': hub.deviceId, '$.cmid': 'nsensor' });
    await sleep(1000);
    assert.equal(received.length, 0, 'the message was delivered more than once');

    // The filter forwards it: route `FROM .../nfilter/outputs/* INTO $upstream`.
    const fwd = new Message(got.data);
    fwd.messageId = 'node-fwd-1';
    fwd.properties.add('checked', 'yes');
    await within(STEP_MS, 'forward', filter.sendOutputEvent('fwd', fwd));
    const ups = await waitFor('upstream message', STEP_MS, async () => {
      const list = (await hub.upstream()).filter((m) => m.messageId === 'node-fwd-1');
      return list.length ? list : null;
    });
    assert.equal(ups.length, 1);
    assert.equal(ups[0].module, 'nfilter');
    assert.equal(ups[0].output, 'fwd');
    assert.equal(ups[0].body, body);
    assert.deepEqual(ups[0].properties, { checked: 'yes' });
  }));

  it('connects from the edge environment through the Workload API', { timeout: TEST_MS }, () => withLog(async () => {
    const env = hub.env('nedge');
    assert.equal(env.IOTEDGE_MODULEID, 'nedge');
    assert.equal(env.IOTEDGE_WORKLOADURI, `unix://${hub.ready.workload_socket}`);
    assert.equal(env.IOTEDGE_GATEWAYHOSTNAME, 'localhost');
    const saved = { ...process.env };
    let client;
    try {
      for (const k of Object.keys(process.env)) {
        if (k.startsWith('IOTEDGE_') || k === 'EdgeHubConnectionString' || k === 'IotHubConnectionString' || k === 'EdgeModuleCACertificateFile') {
          delete process.env[k];
        }
      }
      // Only the IOTEDGE_* variables: the SDK must fetch the trust bundle and have its SAS
      // signed by devhub's Workload API. Node takes the MQTT port from the gateway host name.
      for (const [k, v] of Object.entries(env)) if (k.startsWith('IOTEDGE_')) process.env[k] = v;
      process.env.IOTEDGE_GATEWAYHOSTNAME = `localhost:${hub.ready.mqtt_tls_port}`;
      client = await within(STEP_MS, 'fromEnvironment', ModuleClient.fromEnvironment(Mqtt));
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
    clients.push(client);
    await within(STEP_MS, 'nedge open', client.open());
    const received = eventQueue();
    client.on('inputMessage', (inputName, msg) => {
      received.push({ inputName, msg });
      client.complete(msg, () => {});
    });
    await hub.waitSubscribed('nedge', `devices/${hub.deviceId}/modules/nedge/inputs/#`);
    const msg = new Message('hello workload');
    msg.messageId = 'node-edge-1';
    msg.properties.add('via', 'workload');
    await within(STEP_MS, 'sendOutputEvent', client.sendOutputEvent('out', msg));
    const { inputName, msg: got } = await received.next('looped-back message');
    assert.equal(inputName, 'loop');
    assert.equal(got.data.toString('utf8'), 'hello workload');
    assert.equal(got.messageId, 'node-edge-1');
    assert.deepEqual(propsOf(got), { via: 'workload', '$.cdid': hub.deviceId, '$.cmid': 'nedge' });
  }));

  it('is refused with a wrong module key', { timeout: TEST_MS }, () => withLog(async () => {
    const wrongKey = Buffer.alloc(32, 1).toString('base64');
    const cs = hub.connectionString('nsensor').replace(/SharedAccessKey=[^;]*/, `SharedAccessKey=${wrongKey}`);
    const client = ModuleClient.fromConnectionString(cs, Mqtt);
    clients.push(client);
    await client.setOptions({ ca: hub.caPem });
    await assert.rejects(within(STEP_MS, 'open with a wrong key', client.open()), (err) => {
      assert.equal(err.constructor.name, 'UnauthorizedError', `${err.constructor.name}: ${err.message}`);
      return true;
    });
  }));

  it('gets the twin, patches reported and receives desired patches', { timeout: TEST_MS }, () => withLog(async () => {
    const client = await connect('ntwin');
    const twin = await within(STEP_MS, 'getTwin', client.getTwin());
    assert.deepEqual(strip(twin.properties.desired), { threshold: 7, unit: 'celsius' });
    const v0 = twin.properties.desired.$version;
    assert.ok(Number.isInteger(v0) && v0 >= 1, `desired $version ${v0}`);

    await within(STEP_MS, 'reported update', new Promise((resolve, reject) => {
      twin.properties.reported.update({ firmware: '2.0.0', battery: { level: 88, charging: false } },
        (err) => (err ? reject(err) : resolve()));
    }));
    const svc = await hub.getTwin('ntwin');
    assert.equal(svc.moduleId, 'ntwin');
    assert.deepEqual(strip(svc.properties.reported), { firmware: '2.0.0', battery: { level: 88, charging: false } });

    await within(STEP_MS, 'reported delete', new Promise((resolve, reject) => {
      twin.properties.reported.update({ battery: null }, (err) => (err ? reject(err) : resolve()));
    }));
    assert.deepEqual(strip((await hub.getTwin('ntwin')).properties.reported), { firmware: '2.0.0' });

    const patches = eventQueue();
    twin.on('properties.desired', (delta) => patches.push(delta));
    // Node emits the current desired properties once when the listener is added.
    const initial = await patches.next('initial desired event');
    assert.equal(initial.threshold, 7);
    await hub.waitSubscribed('ntwin', '$iothub/twin/PATCH/properties/desired/#');

    const updated = await hub.patchDesired('ntwin', { threshold: 8, unit: null, mode: 'fast' });
    assert.deepEqual(strip(updated.properties.desired), { threshold: 8, mode: 'fast' });
    assert.equal(updated.properties.desired.$version, v0 + 1);
    const patch = await patches.next('desired patch');
    assert.deepEqual(patch, { threshold: 8, unit: null, mode: 'fast', $version: v0 + 1 });
    // The SDK merged the patch into its twin.
    assert.equal(twin.properties.desired.threshold, 8);
    assert.equal(twin.properties.desired.mode, 'fast');
    assert.equal(twin.properties.desired.$version, v0 + 1);
  }));

  it('receives direct methods and answers them', { timeout: TEST_MS }, () => withLog(async () => {
    const client = await connect('nmethod');
    const seen = eventQueue();
    client.onMethod('echo', (req, res) => {
      seen.push({ name: req.methodName, payload: req.payload });
      res.send(200, { method: req.methodName, echo: req.payload === undefined ? 'undefined' : req.payload }, () => {});
    });
    client.onMethod('fail', (req, res) => { res.send(500, { error: 'broken' }, () => {}); });
    await hub.waitSubscribed('nmethod', '$iothub/methods/POST/#');

    const payload = { x: 1, s: 'h\u00e9 / & ?', list: [1, null], nested: { ok: true } };
    let r = await hub.invoke('nmethod', 'echo', payload);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { status: 200, payload: { method: 'echo', echo: payload } });
    assert.deepEqual(await seen.next('method request'), { name: 'echo', payload });

    r = await hub.invoke('nmethod', 'echo', 'text');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { status: 200, payload: { method: 'echo', echo: 'text' } });
    await seen.next('method request');

    // A null payload must reach Node as a body ("null"): Node drops requests with an empty body.
    r = await hub.invoke('nmethod', 'echo', null, 5);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { status: 200, payload: { method: 'echo', echo: null } });
    assert.deepEqual(await seen.next('method request'), { name: 'echo', payload: null });

    r = await hub.invoke('nmethod', 'fail', { a: 1 });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { status: 500, payload: { error: 'broken' } });

    // No handler for this name: the SDK never answers, devhub times out with 504.
    r = await hub.invoke('nmethod', 'nobody', {}, 5);
    assert.equal(r.status, 504, r.text);
    assert.equal(typeof r.body.message, 'string');
  }));
});
