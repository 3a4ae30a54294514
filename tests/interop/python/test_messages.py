"""Module-to-module messages over devhub routes, sent and received by the Python SDK."""

import queue

from azure.iot.device import IoTHubModuleClient, Message

from conftest import assert_nothing_more, get, module_client

BODY = b'{"temperature": 21.5}'
CUSTOM = {
    "unit": "celsius",
    # Every character the property bag must percent-encode (PROTOCOL section 5).
    "odd key": "a b/c&d=e%f+g?h#i",
    "unicode": "temp\u00e9rature \u2713",
    "empty": "",
}


def test_route_sensor_output_to_filter_input_keeps_every_property(hub):
    with module_client(hub, "pyfilter") as filt, module_client(hub, "pysensor") as sensor:
        received = queue.Queue()
        filt.on_message_received = received.put  # subscribes before returning

        msg = Message(BODY, message_id="msg-1", content_encoding="utf-8",
                      content_type="application/json")
        msg.correlation_id = "corr-1"
        msg.custom_properties.update(CUSTOM)
        sensor.send_message_to_output(msg, "temperature")

        got = get(received, what="routed message")
        assert got.input_name == "input1"
        assert got.data == BODY
        assert got.message_id == "msg-1"
        assert got.correlation_id == "corr-1"
        assert got.content_type == "application/json"
        assert got.content_encoding == "utf-8"
        # The Python SDK keeps $.cdid/$.cmid (sender identity, added by the hub) as custom
        # properties; $.on (the output name) must not be forwarded.
        assert got.custom_properties == {
            **CUSTOM,
            "$.cdid": hub.device_id,
            "$.cmid": "pysensor",
        }
        assert_nothing_more(received, what="message (delivered twice?)")


def test_filter_forwards_to_upstream_only_when_condition_matches(hub):
    """Route `FROM .../pyfilter/outputs/alerts WHERE level = 'high' INTO $upstream`."""
    with module_client(hub, "pyfilter") as filt:
        for seq, level in ((1, "low"), (2, "high"), (3, "low")):
            m = Message(f"reading {seq}", content_type="text/plain", content_encoding="utf-8")
            m.message_id = f"alert-{seq}"
            m.custom_properties["level"] = level
            m.custom_properties["seq"] = str(seq)
            filt.send_message_to_output(m, "alerts")
        # A marker that must also reach $upstream, sent last: once it is there, the
        # messages before it have been routed (one connection, in order).
        marker = Message("marker", content_type="text/plain", content_encoding="utf-8")
        marker.message_id = "alert-marker"
        marker.custom_properties["level"] = "high"
        filt.send_message_to_output(marker, "alerts")

        found = hub.wait_upstream(lambda m: m.get("messageId") == "alert-marker")
        assert len(found) == 1, found
        ups = [m for m in hub.upstream() if m.get("module") == "pyfilter"]
        assert [m["messageId"] for m in ups] == ["alert-2", "alert-marker"]
        first = ups[0]
        assert first["module"] == "pyfilter"
        assert first["output"] == "alerts"
        assert first["body"] == "reading 2"
        assert first["contentType"] == "text/plain"
        assert first["contentEncoding"] == "utf-8"
        assert first["properties"] == {"level": "high", "seq": "2"}
        assert first["connectionDeviceId"] == hub.device_id
        assert first["connectionModuleId"] == "pyfilter"


def test_message_to_offline_module_is_stored_and_delivered_on_connect(hub):
    # pyfilter is offline here (its earlier session keeps its subscription: CleanSession=0).
    with module_client(hub, "pysensor") as sensor:
        m = Message("while you were away", message_id="stored-1")
        m.custom_properties["stored"] = "yes"
        sensor.send_message_to_output(m, "temperature")
    # The hub restores the subscription and delivers at once on CONNECT, so the handler must
    # be in place before connecting (else the SDK drops the message: "No input message inbox").
    filt = IoTHubModuleClient.create_from_connection_string(
        hub.connection_string("pyfilter"), server_verification_cert=hub.ca_pem)
    received = queue.Queue()
    try:
        filt.on_message_received = received.put  # auto-connects, then subscribes
        got = get(received, what="stored message")
        assert got.input_name == "input1"
        assert got.data == b"while you were away"
        assert got.message_id == "stored-1"
        assert got.custom_properties == {"stored": "yes", "$.cdid": hub.device_id, "$.cmid": "pysensor"}
        assert_nothing_more(received, what="message (delivered twice?)")
    finally:
        filt.shutdown()


def test_body_query_route_reads_python_json_messages(hub):
    """Route `WHERE $body.temperature > 30`: needs $.ct=application/json and $.ce=utf-8,
    which the SDK sends percent-encoded (application%2Fjson)."""
    with module_client(hub, "pysensor") as sensor:
        for i, t in enumerate((25, 35, 99)):
            m = Message(f'{{"temperature": {t}}}', message_id=f"hot-{i}",
                        content_type="application/json", content_encoding="utf-8")
            sensor.send_message_to_output(m, "readings")
        found = hub.wait_upstream(lambda m: m.get("messageId") == "hot-2")
        assert len(found) == 1, found
        hot = [m for m in hub.upstream() if (m.get("messageId") or "").startswith("hot-")]
        assert [m["messageId"] for m in hot] == ["hot-1", "hot-2"]
        assert hot[0]["body"] == '{"temperature": 35}'
        assert hot[0]["output"] == "readings"
        assert hot[0]["contentType"] == "application/json"
        assert hot[0]["contentEncoding"] == "utf-8"
