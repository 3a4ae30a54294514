"""IoTHubModuleClient.create_from_edge_environment(): the IOTEDGE_* variables `devhub env`
prints, with the SAS signed by devhub's Workload API over its Unix socket, and the
EdgeHubConnectionString + EdgeModuleCACertificateFile fallback."""

import queue

import pytest
from azure.iot.device import IoTHubModuleClient, Message

from conftest import connected, get, set_edge_env

WORKLOAD_VARS = (
    "IOTEDGE_IOTHUBHOSTNAME", "IOTEDGE_DEVICEID", "IOTEDGE_MODULEID", "IOTEDGE_GATEWAYHOSTNAME",
    "IOTEDGE_MODULEGENERATIONID", "IOTEDGE_WORKLOADURI", "IOTEDGE_APIVERSION",
)


@pytest.fixture
def edge_env(hub, monkeypatch):
    """Sets the module environment from `devhub env pyedge`; returns it."""
    return set_edge_env(hub, "pyedge", monkeypatch)


def test_devhub_env_names_this_hub(hub, edge_env):
    assert edge_env["IOTEDGE_IOTHUBHOSTNAME"] == hub.hub_host_name
    assert edge_env["IOTEDGE_DEVICEID"] == hub.device_id
    assert edge_env["IOTEDGE_MODULEID"] == "pyedge"
    assert edge_env["IOTEDGE_GATEWAYHOSTNAME"] == "localhost"
    assert edge_env["IOTEDGE_AUTHSCHEME"] == "sasToken"
    assert edge_env["IOTEDGE_WORKLOADURI"] == "unix://" + hub.ready["workload_socket"]
    assert edge_env["EdgeModuleCACertificateFile"] == hub.ca_file
    assert edge_env["EdgeHubConnectionString"] == hub.connection_string("pyedge")
    for k in WORKLOAD_VARS:
        assert edge_env[k], k


def round_trip(client, tag):
    """Output `out` is routed back to the module's own input `loop`; twin GET works too."""
    received = queue.Queue()
    client.on_message_received = received.put
    msg = Message(f"hello {tag}", message_id=f"edge-{tag}")
    msg.custom_properties["via"] = tag
    client.send_message_to_output(msg, "out")
    got = get(received, what="looped-back message")
    assert got.input_name == "loop"
    assert got.data == f"hello {tag}".encode()
    assert got.message_id == f"edge-{tag}"
    assert got.custom_properties["via"] == tag
    assert got.custom_properties["$.cmid"] == "pyedge"
    twin = client.get_twin()
    assert set(twin) == {"desired", "reported"}


def test_workload_socket_path(hub, edge_env, monkeypatch):
    # Without the connection-string variables the SDK can only use the Workload API
    # (trust bundle + sign).
    monkeypatch.delenv("EdgeHubConnectionString")
    monkeypatch.delenv("EdgeModuleCACertificateFile")
    client = IoTHubModuleClient.create_from_edge_environment()
    with connected(client):
        round_trip(client, "workload")


def test_connection_string_fallback(hub, edge_env, monkeypatch):
    # Python falls back to EdgeHubConnectionString + EdgeModuleCACertificateFile when any
    # of the seven IOTEDGE_* variables it needs is missing.
    monkeypatch.delenv("IOTEDGE_WORKLOADURI")
    client = IoTHubModuleClient.create_from_edge_environment()
    with connected(client):
        round_trip(client, "connstr")
