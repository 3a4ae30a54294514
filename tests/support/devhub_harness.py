"""A `devhub run` process for Python test suites: launch it, read its ready file, stop it, use its CLI.

Shared by the binding's tests (bindings/python/tests/devhub.py, which adds HTTPS API helpers and
is also imported by bench/python) and the interop tests (tests/interop/python/conftest.py).
Callers put this directory on sys.path. Depends on nothing but the standard library.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import signal
import socket
import subprocess
import time
from typing import Any, Dict, Optional, Sequence

REPO = pathlib.Path(__file__).resolve().parent.parent.parent


class DevHubStartError(RuntimeError):
    """devhub exited, or wrote no ready file in time."""


def devhub_bin() -> str:
    """The devhub binary: $DEVHUB_BIN, else the debug build in the repository's target dir."""
    return os.environ.get("DEVHUB_BIN") or str(REPO / "target" / "debug" / "devhub")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_env_exports(text: str) -> Dict[str, str]:
    """The `export K='V'` lines that `devhub env MODULE` prints, as a dict."""
    env: Dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


class DevHubProcess:
    """`devhub run` with its ready file read; `restart()` keeps state dir and ports.

    Port 0 means an ephemeral port; after a start the ports are the ones devhub chose, so a
    restart reuses them. `fresh_log` truncates the log at each start instead of appending.
    """

    READY_FILE = "ready.json"

    def __init__(self, state_dir: pathlib.Path, log_path: pathlib.Path, manifest: pathlib.Path,
                 mqtt_port: int = 0, https_port: int = 0, log_level: Optional[str] = None,
                 extra: Sequence[str] = (), fresh_log: bool = False) -> None:
        self.binary = devhub_bin()
        self.state_dir = pathlib.Path(state_dir)
        self.log_path = pathlib.Path(log_path)
        self.manifest = manifest
        self.log_level = log_level or os.environ.get("DEVHUB_LOG", "info")
        self.extra = list(extra)
        self.fresh_log = fresh_log
        self.want_mqtt, self.want_https = mqtt_port, https_port
        self.proc: Optional[subprocess.Popen] = None
        self.ready: Dict[str, Any] = {}
        self.start()

    def start(self) -> None:
        ready_file = self.state_dir / self.READY_FILE
        if ready_file.exists():
            ready_file.unlink()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w" if self.fresh_log else "a", encoding="utf-8")
        self.proc = subprocess.Popen(
            [self.binary, "run", "--manifest", str(self.manifest), "--state-dir", str(self.state_dir),
             "--ready-file", str(ready_file), "--mqtt-port", str(self.want_mqtt),
             "--https-port", str(self.want_https), "--log", self.log_level, *self.extra],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"},
        )
        log.close()
        deadline = time.monotonic() + 60
        while not ready_file.exists() or ready_file.stat().st_size == 0:
            if self.proc.poll() is not None:
                raise DevHubStartError(f"devhub exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise DevHubStartError("devhub wrote no ready file in 60 s")
            time.sleep(0.05)
        self.ready = json.loads(ready_file.read_text())
        self.mqtt_port = int(self.ready["mqtt_tls_port"])
        self.https_port = int(self.ready["https_port"])
        self.want_mqtt, self.want_https = self.mqtt_port, self.https_port
        self.device_id = self.ready["device_id"]
        self.hub_host_name = self.ready["hub_host_name"]
        self.ca_file = str(self.ready["ca_file"])
        self.ca_pem = pathlib.Path(self.ca_file).read_text()

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
        """`devhub env MODULE` parsed into a dict (the `export K='V'` lines)."""
        return parse_env_exports(self.cli("env", module))
