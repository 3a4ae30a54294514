"""Direct methods answered by a Python SDK module, invoked through devhub's service API,
through azure-iot-hub, and by another Python SDK module (module-to-module over HTTPS)."""

import base64
import queue

import pytest
from azure.iot.device import MethodResponse

from conftest import edge_module_client, get, module_client


@pytest.fixture(scope="module")
def target(hub):
    """`pymethod` answers `echo` (200), `fail` (404) and never answers `ignore`."""
    with module_client(hub, "pymethod") as client:
        requests_seen = queue.Queue()

        def on_method(req):
            requests_seen.put((req.name, req.payload))
            if req.name == "echo":
                client.send_method_response(MethodResponse.create_from_method_request(
                    req, 200, {"method": req.name, "echo": req.payload}))
            elif req.name == "fail":
                client.send_method_response(MethodResponse.create_from_method_request(
                    req, 404, {"error": "no such thing"}))

        client.on_method_request_received = on_method
        yield requests_seen


def drain(q):
    while not q.empty():
        q.get_nowait()


def test_service_invoke_echo(hub, target):
    drain(target)
    payload = {"x": 1, "s": "h\u00e9 / & ?", "list": [1, 2, None], "nested": {"ok": True}}
    r = hub.invoke("pymethod", "echo", payload)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": 200, "payload": {"method": "echo", "echo": payload}}
    assert get(target, what="method request") == ("echo", payload)


def test_service_invoke_scalar_and_null_payloads(hub, target):
    drain(target)
    for payload in ("just text", 42, None):
        r = hub.invoke("pymethod", "echo", payload)
        assert r.status_code == 200, r.text
        assert r.json() == {"status": 200, "payload": {"method": "echo", "echo": payload}}
        assert get(target, what="method request") == ("echo", payload)


def test_service_invoke_module_status_is_passed_through(hub, target):
    r = hub.invoke("pymethod", "fail", {"a": 1})
    assert r.status_code == 200, r.text
    assert r.json() == {"status": 404, "payload": {"error": "no such thing"}}


def test_service_invoke_unanswered_times_out_with_504(hub, target):
    r = hub.invoke("pymethod", "ignore", None, response_timeout=5)
    assert r.status_code == 504, r.text
    assert "message" in r.json()


def test_service_invoke_offline_module_is_404(hub):
    r = hub.invoke("pycaller", "echo", None, connect_timeout=0)
    assert r.status_code == 404, r.text
    assert "message" in r.json()


def test_invoke_through_azure_iot_hub(hub, target):
    from azure.iot.hub import IoTHubRegistryManager
    from azure.iot.hub.models import CloudToDeviceMethod

    cs = hub.service_connection_string()
    if cs is None:
        pytest.fail("devhub stores no iothubowner key in keys.json: no service connection string")
    registry = IoTHubRegistryManager.from_connection_string(cs)
    registry.protocol.config.base_url = hub.base_url
    registry.protocol.config.connection.verify = hub.ca_file
    drain(target)
    result = registry.invoke_device_module_method(
        hub.device_id, "pymethod",
        CloudToDeviceMethod(method_name="echo", payload={"from": "azure-iot-hub"},
                            response_timeout_in_seconds=10, connect_timeout_in_seconds=0))
    assert result.status == 200
    assert result.payload == {"method": "echo", "echo": {"from": "azure-iot-hub"}}
    assert get(target, what="method request") == ("echo", {"from": "azure-iot-hub"})


def test_module_to_module_invoke(hub, target, monkeypatch):
    # The Python SDK allows invoke_method only on clients made from the edge environment.
    drain(target)
    with edge_module_client(hub, "pycaller", monkeypatch) as caller:
        result = caller.invoke_method(
            {"methodName": "echo", "payload": {"from": "pycaller", "n": 7},
             "responseTimeoutInSeconds": 10, "connectTimeoutInSeconds": 0},
            hub.device_id, "pymethod")
        assert result == {"status": 200, "payload": {"method": "echo", "echo": {"from": "pycaller", "n": 7}}}
        assert get(target, what="method request") == ("echo", {"from": "pycaller", "n": 7})

        result = caller.invoke_method(
            {"methodName": "fail", "payload": None, "responseTimeoutInSeconds": 10},
            hub.device_id, "pymethod")
        assert result == {"status": 404, "payload": {"error": "no such thing"}}


def test_azure_iot_hub_with_a_wrong_key_is_401(hub):
    """The positive azure-iot-hub tests send a SAS; prove devhub checks it (loopback calls
    without Authorization are accepted, calls with a bad one must not be)."""
    from azure.iot.hub import IoTHubRegistryManager
    from msrest.exceptions import HttpOperationError

    cs = hub.service_connection_string()
    if cs is None:
        pytest.fail("devhub stores no iothubowner key in keys.json: no service connection string")
    wrong = base64.b64encode(b"\x01" * 32).decode()
    bad = cs.rsplit("SharedAccessKey=", 1)[0] + "SharedAccessKey=" + wrong
    registry = IoTHubRegistryManager.from_connection_string(bad)
    registry.protocol.config.base_url = hub.base_url
    registry.protocol.config.connection.verify = hub.ca_file
    with pytest.raises(HttpOperationError) as e:
        registry.get_module_twin(hub.device_id, "pymethod")
    assert e.value.response.status_code == 401
