"""Connection variants of the Python SDK: MQTT over WebSockets (wss://localhost:443) and SAS
token renewal (the SDK disconnects and reconnects with a new token, relying on the hub to
keep its subscriptions: it does not subscribe again)."""

import base64
import queue
import threading
import time

import pytest
from azure.iot.device import IoTHubModuleClient, Message, MethodResponse, exceptions

from conftest import assert_nothing_more, connected, get, module_client


def test_mqtt_over_websockets(hub):
    client = IoTHubModuleClient.create_from_connection_string(
        hub.connection_string("pyws"), server_verification_cert=hub.ca_pem, websockets=True)
    with connected(client):
        received = queue.Queue()
        client.on_message_received = received.put
        m = Message("over websockets", message_id="ws-1")
        m.custom_properties["transport"] = "wss"
        client.send_message_to_output(m, "out")
        got = get(received, what="looped-back message")
        assert got.input_name == "loop"
        assert got.data == b"over websockets"
        assert got.custom_properties == {"transport": "wss", "$.cdid": hub.device_id, "$.cmid": "pyws"}
        client.patch_twin_reported_properties({"transport": "wss"})
        assert client.get_twin()["reported"]["transport"] == "wss"
        status = hub.request("GET", "/devhub/status").json()
        conns = [c for c in status["connections"] if c["identity"] == f"{hub.device_id}/pyws"]
        assert [c["transport"] for c in conns] == ["websocket"], status["connections"]


def test_sas_renewal_reconnects_and_keeps_subscriptions(hub):
    # TTL 124 s: the SDK renews 120 s before expiry, i.e. every ~4 s, by disconnecting and
    # reconnecting with the new token.
    client = IoTHubModuleClient.create_from_connection_string(
        hub.connection_string("pyfilter"), server_verification_cert=hub.ca_pem, sastoken_ttl=124)
    changes = []
    reconnected = threading.Event()

    def on_change():
        changes.append(client.connected)
        if changes[-2:] == [False, True]:
            reconnected.set()

    client.on_connection_state_change = on_change
    with connected(client):
        received = queue.Queue()
        client.on_message_received = received.put
        assert reconnected.wait(20), f"no SAS renewal reconnect within 20 s: {changes}"
        with module_client(hub, "pysensor") as sensor:
            sensor.send_message_to_output(Message("after renewal", message_id="renew-1"), "temperature")
        got = get(received, what="message after SAS renewal")
        assert got.data == b"after renewal"
        assert got.input_name == "input1"
        assert_nothing_more(received, what="message")
        assert client.connected


def test_method_waits_for_module_to_connect(hub):
    """connectTimeoutInSeconds: the request waits until the module subscribes."""
    result = {}

    def invoke():
        r = hub.invoke("pylate", "hello", {"n": 1}, response_timeout=10, connect_timeout=20)
        result["status"], result["body"] = r.status_code, r.json()

    t = threading.Thread(target=invoke)
    t.start()
    time.sleep(1.5)  # the invocation is now waiting for pylate
    try:
        with module_client(hub, "pylate") as client:
            client.on_method_request_received = lambda req: client.send_method_response(
                MethodResponse.create_from_method_request(req, 201, {"late": req.payload}))
            t.join(25)
    finally:
        t.join(25)
    assert result == {"status": 200, "body": {"status": 201, "payload": {"late": {"n": 1}}}}


def test_wrong_module_key_is_refused(hub):
    wrong = base64.b64encode(b"\x01" * 32).decode()
    cs = hub.connection_string("pysensor").split(";")
    cs = ";".join(p if not p.startswith("SharedAccessKey=") else "SharedAccessKey=" + wrong for p in cs)
    client = IoTHubModuleClient.create_from_connection_string(
        cs, server_verification_cert=hub.ca_pem, connection_retry=False)
    try:
        with pytest.raises(exceptions.CredentialError):
            client.connect()
    finally:
        client.shutdown()
