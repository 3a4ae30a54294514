#!/usr/bin/env python3
"""Host-side helper for cross-target test runs (issue 6).

The core's integration tests start a devhub per test (own manifest, restarted by some tests) and
a mosquitto for the broker tests. Under qemu-user or wine the test binary cannot run the host's
devhub in-process, so in external mode (env EDGEMODULE_HOSTCTL=host:port) the harness in
core/tests/common/mod.rs asks this server, over plain HTTP on loopback, to do it natively:

  POST   /hubs                {"manifest": "<json text>", "ack_timeout": 3}  -> hub info
  POST   /hubs/{id}/stop      SIGTERM devhub (it flushes its state) and wait for it
  POST   /hubs/{id}/start     start it again on the same state dir and ports -> hub info
  DELETE /hubs/{id}           stop and forget it (state dir removed)
  POST   /hubs/{id}/api       {"method", "path", "body"} -> {"status", "body"}: a call to
                              devhub's HTTPS service/devhub API (twins, methods, faults,
                              upstream), from loopback so no SAS token is needed
  POST   /hubs/{id}/cli       {"args": "twin update m --desired '{..}'"} -> {"rc", "stdout",
                              "stderr"}: devhub's CLI (`devhub --state-dir S ARGS`, ARGS split
                              as a POSIX shell would) against that hub (the C suite's harness)
  POST   /mosquitto           {"port": N or null} -> {"id", "port"}
  DELETE /mosquitto/{id}

Hub info: ready.json's fields plus "ca_pem", "module_keys" (keys.json) and "workload_http",
a TCP port forwarded to devhub's Workload API unix socket (Windows modules reach the Workload
API over http://, as on IoT Edge for Windows).

Usage: hostctl.py --devhub PATH [--devhub-runner "qemu-aarch64 -L /usr/aarch64-linux-gnu"]
                  [--mosquitto PATH] [--port-file F] [--log-dir D]
(--devhub-runner runs a cross-built devhub under an emulator: the host's core tests then
exercise devhub on that architecture.)
Prints "hostctl listening on 127.0.0.1:PORT" and writes PORT to --port-file. Everything it
started is stopped on SIGTERM/SIGINT.
"""

import argparse
import http.client
import json
import os
import shutil
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
HUBS = {}
BROKERS = {}
COUNTER = [0]
ARGS = None


def next_id(prefix):
    with LOCK:
        COUNTER[0] += 1
        return f"{prefix}{COUNTER[0]}"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Forwarder:
    """TCP 127.0.0.1:port -> unix socket, one thread pair per connection."""

    def __init__(self, unix_path):
        self.unix_path = unix_path
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        u = socket.socket(socket.AF_UNIX)
        try:
            u.connect(self.unix_path)
        except OSError:
            c.close()
            return

        def pump(a, b):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    b.sendall(d)
            except OSError:
                pass
            finally:
                try:
                    b.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        t = threading.Thread(target=pump, args=(u, c), daemon=True)
        t.start()
        pump(c, u)
        t.join(30)
        c.close()
        u.close()


class DevHub:
    def __init__(self, manifest_text, ack_timeout):
        self.dir = tempfile.mkdtemp(prefix="hostctl-hub-")
        self.state = os.path.join(self.dir, "state")
        self.manifest = os.path.join(self.dir, "deployment.json")
        with open(self.manifest, "w") as f:
            f.write(manifest_text)
        self.ack_timeout = ack_timeout
        self.ports = None  # (mqtt_tls, https, mqtt_plain) fixed after the first start
        self.proc = None
        self.log = None
        self.forwarder = None
        self.info = None

    def start(self):
        ready = os.path.join(self.state, "ready.json")
        if os.path.exists(ready):
            os.unlink(ready)
        tls, https, plain = self.ports or (0, 0, 0)
        cmd = shlex.split(ARGS.devhub_runner) + [ARGS.devhub, "--state-dir", self.state, "run", "--manifest", self.manifest,
               "--mqtt-port", str(tls), "--https-port", str(https),
               "--mqtt-plain-port", str(plain), "--ack-timeout", str(self.ack_timeout),
               "--log", os.environ.get("HOSTCTL_DEVHUB_LOG", "warn")]
        log_path = os.path.join(ARGS.log_dir or self.dir, os.path.basename(self.dir) + ".log")
        self.log = open(log_path, "ab")
        # cwd: its own directory, never the caller's (the repo root in cross/run.sh).
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.dir)
        deadline = time.time() + 60
        while not os.path.exists(ready):
            if self.proc.poll() is not None:
                raise RuntimeError(f"devhub exited with {self.proc.returncode}; see {log_path}")
            if time.time() > deadline:
                raise RuntimeError(f"devhub not ready in 60 s; see {log_path}")
            time.sleep(0.02)
        with open(ready) as f:
            info = json.load(f)
        self.ports = (info["mqtt_tls_port"], info["https_port"], info.get("mqtt_plain_port") or 0)
        with open(info["ca_file"]) as f:
            info["ca_pem"] = f.read()
        with open(os.path.join(self.state, "keys.json")) as f:
            info["module_keys"] = json.load(f).get("modules", {})
        if self.forwarder is None:
            self.forwarder = Forwarder(info["workload_socket"])
        info["workload_http"] = f"127.0.0.1:{self.forwarder.port}"
        self.info = info
        return info

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None

    def remove(self):
        self.stop()
        if self.forwarder:
            self.forwarder.sock.close()
        if not ARGS.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def cli(self, args):
        cmd = shlex.split(ARGS.devhub_runner) + [ARGS.devhub, "--state-dir", self.state] + \
            shlex.split(args)
        try:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=330,
                               cwd=self.dir)
            rc, out, err = r.returncode, r.stdout, r.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = "timeout", e.stdout or b"", e.stderr or b""
        return {"rc": rc, "stdout": out.decode("utf-8", "replace"),
                "stderr": err.decode("utf-8", "replace")}

    def api(self, method, path, body):
        ctx = ssl.create_default_context(cadata=self.info["ca_pem"])
        conn = http.client.HTTPSConnection("localhost", self.ports[1], context=ctx, timeout=330)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        raw = r.read()
        conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return {"status": r.status, "body": parsed}


class Mosquitto:
    def __init__(self, port):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="hostctl-mosq-")
        conf = os.path.join(self.dir, "mosquitto.conf")
        text = (f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "max_queued_messages 0\nmax_inflight_messages 0\n")
        if os.geteuid() == 0:
            text += "user root\n"  # else it drops to user mosquitto
        with open(conf, "w") as f:
            f.write(text)
        self.proc = subprocess.Popen([ARGS.mosquitto, "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                     cwd=self.dir)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.remove()
                    raise RuntimeError(f"mosquitto did not listen on {self.port}")
                time.sleep(0.05)

    def remove(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if os.environ.get("HOSTCTL_VERBOSE"):
            sys.stderr.write("hostctl: " + (fmt % args) + "\n")

    def reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n)) if n else {}

    def do_POST(self):
        self.dispatch("POST")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def dispatch(self, verb):
        try:
            req = self.body()
            parts = [p for p in self.path.split("/") if p]
            if verb == "POST" and parts == ["hubs"]:
                hub = DevHub(req["manifest"], int(req.get("ack_timeout", 30)))
                hid = next_id("h")
                with LOCK:
                    HUBS[hid] = hub
                info = hub.start()
                return self.reply(200, dict(info, id=hid))
            if len(parts) >= 2 and parts[0] == "hubs":
                with LOCK:
                    hub = HUBS.get(parts[1])
                if hub is None:
                    return self.reply(404, {"message": f"no hub {parts[1]}"})
                action = parts[2] if len(parts) > 2 else None
                if verb == "DELETE" and action is None:
                    with LOCK:
                        HUBS.pop(parts[1], None)
                    hub.remove()
                    return self.reply(200, {})
                if verb == "POST" and action == "stop":
                    hub.stop()
                    return self.reply(200, {})
                if verb == "POST" and action == "start":
                    hub.stop()
                    return self.reply(200, dict(hub.start(), id=parts[1]))
                if verb == "POST" and action == "cli":
                    return self.reply(200, hub.cli(req["args"]))
                if verb == "POST" and action == "api":
                    return self.reply(200, hub.api(req["method"], req["path"], req.get("body")))
            if verb == "POST" and parts == ["mosquitto"]:
                m = Mosquitto(req.get("port"))
                mid = next_id("m")
                with LOCK:
                    BROKERS[mid] = m
                return self.reply(200, {"id": mid, "port": m.port})
            if verb == "DELETE" and len(parts) == 2 and parts[0] == "mosquitto":
                with LOCK:
                    m = BROKERS.pop(parts[1], None)
                if m:
                    m.remove()
                return self.reply(200, {})
            return self.reply(404, {"message": f"unknown {verb} {self.path}"})
        except Exception as e:  # noqa: BLE001 - reported to the test, which fails with it
            return self.reply(500, {"message": f"{type(e).__name__}: {e}"})


def shutdown_all(*_):
    with LOCK:
        hubs, brokers = list(HUBS.values()), list(BROKERS.values())
        HUBS.clear()
        BROKERS.clear()
    for h in hubs:
        h.remove()
    for m in brokers:
        m.remove()
    os._exit(0)


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--devhub", required=True)
    p.add_argument("--mosquitto", default=shutil.which("mosquitto") or "/usr/sbin/mosquitto")
    p.add_argument("--devhub-runner", default="",
                   help='run devhub through this, e.g. "qemu-aarch64 -L /usr/aarch64-linux-gnu"')
    p.add_argument("--port-file")
    p.add_argument("--log-dir")
    p.add_argument("--keep", action="store_true", help="keep hub state dirs")
    ARGS = p.parse_args()
    if os.sep in ARGS.devhub:  # children run in their own directories
        ARGS.devhub = os.path.abspath(ARGS.devhub)
    if ARGS.log_dir:
        os.makedirs(ARGS.log_dir, exist_ok=True)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    port = srv.server_address[1]
    signal.signal(signal.SIGTERM, shutdown_all)
    signal.signal(signal.SIGINT, shutdown_all)
    if ARGS.port_file:
        with open(ARGS.port_file + ".tmp", "w") as f:
            f.write(f"{port}\n")
        os.replace(ARGS.port_file + ".tmp", ARGS.port_file)
    print(f"hostctl listening on 127.0.0.1:{port}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
