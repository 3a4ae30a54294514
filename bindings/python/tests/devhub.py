"""A `devhub run` process for tests and benchmarks, and helpers around its CLI and HTTPS API.

Also used by bench/python (imported by path), so it depends on nothing but the standard library.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from typing import Any, Dict, List, Optional, Sequence

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
MANIFEST = HERE / "manifest.json"


def devhub_bin() -> str:
    return os.environ.get("DEVHUB_BIN") or str(REPO / "target" / "debug" / "devhub")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevHub:
    """`devhub run` with its ready file read; `restart()` keeps state dir and ports."""

    def __init__(self, state_dir: pathlib.Path, log_path: pathlib.Path, mqtt_port: int = 0,
                 https_port: int = 0, manifest: pathlib.Path = MANIFEST,
                 extra: Sequence[str] = ()) -> None:
        self.binary = devhub_bin()
        self.state_dir = pathlib.Path(state_dir)
        self.log_path = pathlib.Path(log_path)
        self.manifest = manifest
        self.extra = list(extra)
        self.want_mqtt, self.want_https = mqtt_port, https_port
        self.proc: Optional[subprocess.Popen] = None
        self.ready: Dict[str, Any] = {}
        self.start()

    def start(self) -> None:
        ready_file = self.state_dir / "test-ready.json"
        if ready_file.exists():
            ready_file.unlink()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "a", encoding="utf-8")
        self.proc = subprocess.Popen(
            [self.binary, "run", "--manifest", str(self.manifest), "--state-dir", str(self.state_dir),
             "--ready-file", str(ready_file), "--mqtt-port", str(self.want_mqtt),
             "--https-port", str(self.want_https), "--log", os.environ.get("DEVHUB_LOG", "info"),
             *self.extra],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"},
        )
        log.close()
        deadline = time.monotonic() + 60
        while not ready_file.exists() or ready_file.stat().st_size == 0:
            if self.proc.poll() is not None:
                raise RuntimeError(f"devhub exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError("devhub wrote no ready file in 60 s")
            time.sleep(0.05)
        self.ready = json.loads(ready_file.read_text())
        self.mqtt_port = int(self.ready["mqtt_tls_port"])
        self.https_port = int(self.ready["https_port"])
        self.want_mqtt, self.want_https = self.mqtt_port, self.https_port
        self.device_id = self.ready["device_id"]
        self.ca_file = str(self.ready["ca_file"])
        self.ca_pem = pathlib.Path(self.ca_file).read_text()
        self._ssl = ssl.create_default_context(cafile=self.ca_file)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, n: int = 60) -> str:
        try:
            return "".join(self.log_path.read_text(errors="replace").splitlines(True)[-n:])
        except OSError:
            return ""

    # ----- CLI -----
    def cli(self, *args: str) -> str:
        out = subprocess.run([self.binary, "--state-dir", str(self.state_dir), *args],
                             check=True, capture_output=True, text=True, timeout=30)
        return out.stdout

    def connection_string(self, module: str) -> str:
        return self.cli("connection-string", module).strip()

    def env(self, module: str) -> Dict[str, str]:
        """`devhub env MODULE` as a dict, plus the ports of this devhub."""
        env: Dict[str, str] = {}
        for line in self.cli("env", module).splitlines():
            if line.startswith("export "):
                k, _, v = line[len("export "):].partition("=")
                env[k] = shlex.split(v)[0] if v else ""
        env["EDGEMODULE_MQTT_PORT"] = str(self.mqtt_port)
        env["EDGEMODULE_HTTPS_PORT"] = str(self.https_port)
        return env

    def options(self) -> Dict[str, Any]:
        return {"mqtt_port": self.mqtt_port, "https_port": self.https_port,
                "server_verification_cert": self.ca_pem}

    # ----- HTTPS API -----
    def request(self, method: str, path: str, body: Any = None, raw: Optional[bytes] = None,
                headers: Optional[Dict[str, str]] = None, timeout: float = 30) -> Any:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(f"https://localhost:{self.https_port}{path}", data=data,
                                     method=method, headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=timeout) as r:
                text = r.read()
                return r.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                return e.code, json.loads(text)
            except ValueError:
                return e.code, text.decode(errors="replace")

    def twin(self, module: str) -> Dict[str, Any]:
        s, v = self.request("GET", f"/twins/{self.device_id}/modules/{module}")
        assert s == 200, (s, v)
        return v

    def patch_desired(self, module: str, desired: Dict[str, Any]) -> Dict[str, Any]:
        s, v = self.request("PATCH", f"/twins/{self.device_id}/modules/{module}",
                            {"properties": {"desired": desired}}, headers={"If-Match": "*"})
        assert s == 200, (s, v)
        return v

    def invoke(self, module: str, method: str, payload: Any = None, timeout: int = 10) -> Any:
        return self.request("POST", f"/twins/{self.device_id}/modules/{module}/methods",
                            {"methodName": method, "payload": payload,
                             "responseTimeoutInSeconds": timeout, "connectTimeoutInSeconds": 0},
                            timeout=timeout + 10)

    def inject(self, module: str, input_name: str, body: bytes, props: Optional[Dict[str, str]] = None) -> None:
        q = "&".join(f"{urllib.parse.quote(k)}={urllib.parse.quote(v)}" for k, v in (props or {}).items())
        s, v = self.request("POST", f"/devhub/modules/{module}/inputs/{input_name}" + (f"?{q}" if q else ""),
                            raw=body, headers={"Content-Type": "application/octet-stream"})
        assert s == 202, (s, v)

    def upstream(self) -> List[Dict[str, Any]]:
        s, v = self.request("GET", "/devhub/upstream")
        assert s == 200, (s, v)
        return v

    def wait_upstream(self, predicate, count: int = 1, timeout: float = 15) -> List[Dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.upstream() if predicate(m)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def fault(self, kind: str, **query: Any) -> None:
        q = "&".join(f"{k}={v}" for k, v in query.items())
        s, v = self.request("POST", f"/devhub/faults/{kind}" + (f"?{q}" if q else ""))
        assert s == 200, (s, v)
