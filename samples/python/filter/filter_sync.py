#!/usr/bin/env python3
"""filter (blocking style): forwards readings from input1 whose machine.temperature exceeds the
desired TemperatureThreshold to output1 (tagged MessageType=Alert); desired patches change the
threshold (reported back); method ``reset`` restores the default.

Run with the environment ``devhub env filter`` prints (plus EDGEMODULE_MQTT_PORT /
EDGEMODULE_HTTPS_PORT for a devhub on other ports than 8883/443).
"""

from __future__ import annotations

import signal
import sys
import threading

from common import DEFAULT_THRESHOLD, INPUT, OUTPUT, alert, machine_temperature, number, threshold_in

from edgemodule import EdgeModuleError, Message, MethodRequest, MethodResponse, ModuleClient


class Filter:
    def __init__(self, client: ModuleClient) -> None:
        self.client = client
        self.threshold = DEFAULT_THRESHOLD
        self.received = 0
        self.alerts = 0

    def report(self) -> None:
        try:
            self.client.patch_twin_reported_properties({"TemperatureThreshold": number(self.threshold)})
        except EdgeModuleError as e:
            print(f"filter: reporting the threshold failed: {e}", file=sys.stderr)

    def on_input(self, message: Message) -> None:
        self.received += 1
        n = self.received
        t = machine_temperature(message.data)
        if t is None:
            print(f"filter: #{n} on {INPUT} is not a sensor reading, dropped", flush=True)
            return
        if t <= self.threshold:
            print(f"filter: #{n} temperature={t} <= {number(self.threshold)}, dropped", flush=True)
            return
        # Raising here (a failed send) is logged; the reading is still acknowledged.
        self.client.send_message_to_output(alert(message), OUTPUT)
        self.alerts += 1
        print(f"filter: #{n} temperature={t} > {number(self.threshold)} -> alert #{self.alerts} to {OUTPUT}", flush=True)

    def on_desired(self, patch: dict) -> None:
        t = threshold_in(patch)
        if t is None:
            return
        before, self.threshold = self.threshold, t
        print(f"filter: threshold changed {number(before)} -> {number(t)} (desired version {patch.get('$version', '?')})", flush=True)
        self.report()

    def on_reset(self, request: MethodRequest) -> MethodResponse:
        before, self.threshold = self.threshold, DEFAULT_THRESHOLD
        print(f"filter: method reset: threshold {number(before)} -> {number(self.threshold)}", flush=True)
        self.report()
        return MethodResponse.create_from_method_request(request, 200, {"threshold": number(self.threshold)})

    def on_other_method(self, request: MethodRequest) -> MethodResponse:
        print(f"filter: unknown method {request.name!r} (payload {request.payload}), 404", flush=True)
        return MethodResponse.create_from_method_request(
            request, 404, {"message": f"method {request.name!r} is not implemented"})


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with ModuleClient.create_from_edge_environment() as client:
            f = Filter(client)
            client.set_input_message_handler(INPUT, f.on_input)
            client.on_twin_desired_properties_patch_received = f.on_desired
            client.set_method_handler("reset", f.on_reset)
            client.on_method_request_received = f.on_other_method
            client.on_connection_state_change = lambda status, reason: print(
                f"filter: connection {status.name} ({reason.name})", flush=True)
            client.connect()
            f.threshold = threshold_in(client.get_twin().desired) or DEFAULT_THRESHOLD
            f.report()
            print(f"filter: connected; TemperatureThreshold={number(f.threshold)}, reading {INPUT}", flush=True)
            stop.wait()
            print("filter: shutting down", flush=True)
    except EdgeModuleError as e:
        print(f"filter: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
