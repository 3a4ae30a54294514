"""A `devhub run` process for tests and benchmarks (tests/support/devhub_harness.py), plus
helpers around its HTTPS API.

Also used by bench/python (imported by path), so it depends on nothing but the standard library.
"""

from __future__ import annotations

import json
import pathlib
import ssl
import sys
import time
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Sequence

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
MANIFEST = HERE / "manifest.json"

sys.path.insert(0, str(REPO / "tests" / "support"))
from devhub_harness import DevHubProcess, devhub_bin, free_port  # noqa: E402

__all__ = ["REPO", "MANIFEST", "DevHub", "devhub_bin", "free_port"]


class DevHub(DevHubProcess):
    """`devhub run` with this suite's manifest; `restart()` keeps state dir and ports."""

    def __init__(self, state_dir: pathlib.Path, log_path: pathlib.Path, mqtt_port: int = 0,
                 https_port: int = 0, manifest: pathlib.Path = MANIFEST,
                 extra: Sequence[str] = ()) -> None:
        super().__init__(state_dir, log_path, manifest, mqtt_port=mqtt_port, https_port=https_port,
                         extra=extra)

    def start(self) -> None:
        super().start()
        self._ssl = ssl.create_default_context(cafile=self.ca_file)

    def env(self, module: str) -> Dict[str, str]:
        """`devhub env MODULE` as a dict, plus the ports of this devhub."""
        env = super().env(module)
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
