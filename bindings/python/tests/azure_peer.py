"""Runs inside a private network namespace (test_interop_azure.py): devhub on 8883/443 (the
official Python SDK's fixed ports), then a route each way between an edgemodule module and a
module built on Microsoft's azure-iot-device. Exit 0 when every check passes."""

from __future__ import annotations

import asyncio
import pathlib
import queue
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from azure.iot.device import IoTHubModuleClient  # noqa: E402
from azure.iot.device import Message as AzMessage  # noqa: E402
from devhub import DevHub  # noqa: E402

import edgemodule  # noqa: E402
import edgemodule.aio  # noqa: E402

PROPS = {"unit": "celsius", "odd key": "a b/c&d=e%f+g?h#i", "unicode": "temp\u00e9rature"}


def main(log_dir: str) -> int:
    with tempfile.TemporaryDirectory() as d:
        hub = DevHub(pathlib.Path(d) / "state", pathlib.Path(log_dir) / "devhub-azure.log",
                     mqtt_port=8883, https_port=443)
        try:
            return run(hub)
        finally:
            hub.stop()


def run(hub: DevHub) -> int:
    # 1. azure-iot-device "sender" -> route -> edgemodule (sync) "receiver"
    got: "queue.Queue[edgemodule.Message]" = queue.Queue()
    ours = edgemodule.ModuleClient.create_from_connection_string(hub.connection_string("receiver"),
                                                                 server_verification_cert=hub.ca_pem)
    ours.set_input_message_handler("in1", got.put)
    ours.connect()
    az = IoTHubModuleClient.create_from_connection_string(hub.connection_string("sender"),
                                                          server_verification_cert=hub.ca_pem)
    az.connect()
    m = AzMessage(b'{"t": 1}', message_id="az-1", content_encoding="utf-8", content_type="application/json")
    m.custom_properties.update(PROPS)
    az.send_message_to_output(m, "out")
    r = got.get(timeout=20)
    assert r.data == b'{"t": 1}', r
    assert r.message_id == "az-1" and r.content_type == "application/json" and r.content_encoding == "utf-8"
    assert r.custom_properties == PROPS, r.custom_properties
    assert r.connection_module_id == "sender"
    print("azure-iot-device -> edgemodule: ok", flush=True)
    az.shutdown()
    ours.shutdown()

    # 2. edgemodule (asyncio) "asender" -> route -> azure-iot-device "areceiver"
    received: "queue.Queue[AzMessage]" = queue.Queue()
    azr = IoTHubModuleClient.create_from_connection_string(hub.connection_string("areceiver"),
                                                           server_verification_cert=hub.ca_pem)
    azr.connect()
    azr.on_message_received = received.put

    async def send() -> None:
        async with edgemodule.aio.ModuleClient.create_from_connection_string(
                hub.connection_string("asender"), server_verification_cert=hub.ca_pem) as c:
            await c.connect()
            await c.send_message_to_output(
                edgemodule.Message(b"from edgemodule", message_id="em-1", content_type="text/plain",
                                   correlation_id="corr", custom_properties=PROPS), "out")

    asyncio.run(send())
    a = received.get(timeout=20)
    assert a.data == b"from edgemodule", a.data
    assert a.input_name == "in1" and a.message_id == "em-1" and a.correlation_id == "corr"
    assert a.content_type == "text/plain"
    props = {k: v for k, v in a.custom_properties.items() if not k.startswith("$.")}
    assert props == PROPS, a.custom_properties
    print("edgemodule -> azure-iot-device: ok", flush=True)
    azr.shutdown()

    # 3. method: azure-iot-device module invokes an edgemodule module's method
    target = edgemodule.ModuleClient.create_from_connection_string(hub.connection_string("methmod"),
                                                                   server_verification_cert=hub.ca_pem)
    target.set_method_handler("ping", lambda req: edgemodule.MethodResponse(req.request_id, 200, {"pong": req.payload}))
    target.connect()
    # The SDK invokes methods only from the edge environment (Workload API), as on a device.
    import os
    env = hub.env("caller")
    for k in ("EdgeHubConnectionString", "EdgeModuleCACertificateFile", "EDGEMODULE_MQTT_PORT", "EDGEMODULE_HTTPS_PORT"):
        env.pop(k, None)
    os.environ.update(env)
    caller = IoTHubModuleClient.create_from_edge_environment()
    caller.connect()
    resp = caller.invoke_method({"methodName": "ping", "payload": 7, "responseTimeoutInSeconds": 10},
                                hub.device_id, "methmod")
    assert resp == {"status": 200, "payload": {"pong": 7}}, resp
    print("azure-iot-device invokes edgemodule method: ok", flush=True)
    caller.shutdown()
    target.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
