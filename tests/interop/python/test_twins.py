"""Module twins: the Python SDK gets the twin and patches reported properties; desired
patches made through devhub's service API and through azure-iot-hub reach the module."""

import queue

import pytest

from conftest import assert_nothing_more, get, module_client

META = ("$version", "$metadata")


def strip(props):
    return {k: v for k, v in props.items() if k not in META}


def test_twin_get_patch_reported_and_desired_updates(hub):
    with module_client(hub, "pytwin") as client:
        patches = queue.Queue()
        client.on_twin_desired_properties_patch_received = patches.put

        # 1. Initial desired properties come from the manifest.
        twin = client.get_twin()
        assert set(twin) == {"desired", "reported"}
        assert strip(twin["desired"]) == {"threshold": 42, "mode": "eco"}
        v0 = twin["desired"]["$version"]
        assert isinstance(v0, int) and v0 >= 1
        assert strip(twin["reported"]) == {}
        assert isinstance(twin["reported"]["$version"], int)

        # 2. Reported patch, visible through the service API.
        client.patch_twin_reported_properties(
            {"firmware": "1.2.3", "temp": 21.5, "nested": {"a": 1, "s": "x y"}})
        svc = hub.get_twin("pytwin")
        assert svc["deviceId"] == hub.device_id
        assert svc["moduleId"] == "pytwin"
        assert strip(svc["properties"]["reported"]) == {
            "firmware": "1.2.3", "temp": 21.5, "nested": {"a": 1, "s": "x y"}}
        assert strip(svc["properties"]["desired"]) == {"threshold": 42, "mode": "eco"}

        # 3. null deletes a reported property (merge semantics).
        client.patch_twin_reported_properties({"firmware": None, "nested": {"a": None}})
        twin = client.get_twin()
        assert strip(twin["reported"]) == {"temp": 21.5, "nested": {"s": "x y"}}

        # 4. Service desired PATCH -> desired patch pushed to the module, $version + 1.
        updated = hub.patch_desired("pytwin", {"threshold": 50, "mode": None, "extra": {"k": "v"}})
        assert strip(updated["properties"]["desired"]) == {"threshold": 50, "extra": {"k": "v"}}
        assert updated["properties"]["desired"]["$version"] == v0 + 1
        patch = get(patches, what="desired patch")
        assert patch == {"threshold": 50, "mode": None, "extra": {"k": "v"}, "$version": v0 + 1}
        assert_nothing_more(patches, what="desired patch")

        twin = client.get_twin()
        assert strip(twin["desired"]) == {"threshold": 50, "extra": {"k": "v"}}
        assert twin["desired"]["$version"] == v0 + 1


def test_desired_patch_through_azure_iot_hub(hub):
    from azure.iot.hub import IoTHubRegistryManager
    from azure.iot.hub.models import Twin, TwinProperties

    cs = hub.service_connection_string()
    if cs is None:
        pytest.fail("devhub stores no iothubowner key in keys.json: no service connection string")
    registry = IoTHubRegistryManager.from_connection_string(cs)
    # HostName (devhub.local) stays the SAS audience; the HTTPS requests go to this devhub,
    # trusting its CA (the name has no DNS entry here).
    registry.protocol.config.base_url = hub.base_url
    registry.protocol.config.connection.verify = hub.ca_file

    with module_client(hub, "pytwin") as client:
        patches = queue.Queue()
        client.on_twin_desired_properties_patch_received = patches.put
        before = registry.get_module_twin(hub.device_id, "pytwin")
        assert before.module_id == "pytwin"
        assert before.device_id == hub.device_id
        v = before.properties.desired["$version"]

        after = registry.update_module_twin(
            hub.device_id, "pytwin", Twin(properties=TwinProperties(desired={"threshold": 77})), etag="*")
        assert after.properties.desired["threshold"] == 77
        assert after.properties.desired["$version"] == v + 1

        patch = get(patches, what="desired patch")
        assert patch == {"threshold": 77, "$version": v + 1}
        assert client.get_twin()["desired"]["threshold"] == 77
