#!/usr/bin/env python3
"""Python benchmark: edgemodule vs azure-iot-device vs the Rust core, same route, same devhub.

Run by bench/python/run.sh inside a private network namespace (azure-iot-device only connects
to port 8883). Phases, each in a fresh process:
  throughput  route benchsend/out -> benchrecv/in1, 256-byte bodies, QoS 1:
              rust core (examples/rust_route), edgemodule aio (batches), edgemodule sync
              (batches, and one by one), azure-iot-device (aio, 100 concurrent; sync one by one)
  rss         RSS added by `import` and by one connected client (edgemodule, azure-iot-device)
  flat        RSS of an edgemodule receiver over BENCH_PY_RSS_N (100k) received messages
Writes a section of bench/RESULTS.md between markers (replaced on each run).
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "bindings" / "python" / "tests"))

BODY = 256
SEND, RECV = "benchsend", "benchrecv"


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- workers (child processes)
def w_em_aio(cs_send, cs_recv, ca, n):
    import edgemodule.aio as aio

    async def main():
        got = 0
        done = asyncio.Event()

        # edgemodule.aio runs handlers on this loop, so the event can be set directly.
        def on_msg(m):
            nonlocal got
            got += 1
            if got >= n:
                done.set()

        r = aio.ModuleClient.create_from_connection_string(cs_recv, server_verification_cert=ca)
        s = aio.ModuleClient.create_from_connection_string(cs_send, server_verification_cert=ca)
        r.on_message_received = on_msg
        await r.connect()
        await s.connect()
        body = b"x" * BODY
        t = time.perf_counter()
        chunk, inflight = 1000, 4
        batches = [[body] * min(chunk, n - i) for i in range(0, n, chunk)]
        for i in range(0, len(batches), inflight):
            for res in await asyncio.gather(*(s.send_messages_to_output(b, "out") for b in batches[i:i + inflight])):
                assert all(x is None for x in res), res[:3]
        await asyncio.wait_for(done.wait(), 120)
        secs = time.perf_counter() - t
        await s.shutdown()
        await r.shutdown()
        if got < n:
            raise RuntimeError(f"edgemodule aio: only {got} of {n} messages arrived")
        return secs

    return asyncio.run(main())


def w_em_sync(cs_send, cs_recv, ca, n, batch=True):
    import edgemodule

    done = threading.Event()
    count = [0]

    def on_msg(m):
        count[0] += 1
        if count[0] >= n:
            done.set()

    r = edgemodule.ModuleClient.create_from_connection_string(cs_recv, server_verification_cert=ca)
    s = edgemodule.ModuleClient.create_from_connection_string(cs_send, server_verification_cert=ca)
    r.on_message_received = on_msg
    r.connect()
    s.connect()
    body = b"x" * BODY
    t = time.perf_counter()
    if batch:
        for i in range(0, n, 1000):
            res = s.send_messages_to_output([body] * min(1000, n - i), "out")
            assert all(x is None for x in res)
    else:
        for _ in range(n):
            s.send_message_to_output(body, "out")
    assert done.wait(120), f"received {count[0]} of {n}"
    secs = time.perf_counter() - t
    s.shutdown()
    r.shutdown()
    return secs


def w_azure_aio(cs_send, cs_recv, ca, n):
    from azure.iot.device import Message
    from azure.iot.device.aio import IoTHubModuleClient

    async def main():
        got = 0
        done = asyncio.Event()
        loop = asyncio.get_running_loop()

        # azure-iot-device runs plain-function handlers on a thread pool, not on this loop:
        # an asyncio.Event must be set through the loop or the waiter never wakes.
        def on_msg(m):
            nonlocal got
            got += 1
            if got >= n:
                loop.call_soon_threadsafe(done.set)

        r = IoTHubModuleClient.create_from_connection_string(cs_recv, server_verification_cert=ca)
        s = IoTHubModuleClient.create_from_connection_string(cs_send, server_verification_cert=ca)
        await r.connect()
        r.on_message_received = on_msg
        await s.connect()
        body = b"x" * BODY
        t = time.perf_counter()
        for i in range(0, n, 10):
            await asyncio.gather(*(s.send_message_to_output(Message(body), "out") for _ in range(min(10, n - i))))
        await asyncio.wait_for(done.wait(), 120)
        secs = time.perf_counter() - t
        await s.shutdown()
        await r.shutdown()
        if got < n:
            raise RuntimeError(f"azure-iot-device aio: only {got} of {n} messages arrived")
        return secs

    return asyncio.run(main())


def w_azure_sync(cs_send, cs_recv, ca, n):
    from azure.iot.device import IoTHubModuleClient, Message

    done = threading.Event()
    count = [0]

    def on_msg(m):
        count[0] += 1
        if count[0] >= n:
            done.set()

    r = IoTHubModuleClient.create_from_connection_string(cs_recv, server_verification_cert=ca)
    s = IoTHubModuleClient.create_from_connection_string(cs_send, server_verification_cert=ca)
    r.connect()
    r.on_message_received = on_msg
    s.connect()
    body = b"x" * BODY
    t = time.perf_counter()
    for _ in range(n):
        s.send_message_to_output(Message(body), "out")
    assert done.wait(300)
    secs = time.perf_counter() - t
    s.shutdown()
    r.shutdown()
    return secs


def w_rss(which, cs, ca):
    base = rss_kb()
    if which == "edgemodule":
        import edgemodule

        imported = rss_kb()
        c = edgemodule.ModuleClient.create_from_connection_string(cs, server_verification_cert=ca)
        c.on_message_received = lambda m: None
        c.connect()
    else:
        from azure.iot.device import IoTHubModuleClient

        imported = rss_kb()
        c = IoTHubModuleClient.create_from_connection_string(cs, server_verification_cert=ca)
        c.connect()
        c.on_message_received = lambda m: None
    time.sleep(1.0)
    connected = rss_kb()
    c.shutdown()
    return {"base": base, "import": imported - base, "client": connected - imported}


def w_flat(cs_send, cs_recv, ca, n):
    """Receiver in this process (sync client, handler per message); sender in a child process."""
    import edgemodule

    samples = []
    count = [0]
    done = threading.Event()
    step = max(n // 10, 1)

    def on_msg(m):
        count[0] += 1
        if count[0] % step == 0:
            samples.append((count[0], rss_kb()))
        if count[0] >= n:
            done.set()

    r = edgemodule.ModuleClient.create_from_connection_string(cs_recv, server_verification_cert=ca)
    r.on_message_received = on_msg
    r.connect()
    sender = subprocess.Popen([sys.executable, __file__, "worker", "em-send", cs_send, cs_recv, ca, str(n)],
                              stdout=subprocess.DEVNULL)
    ok = done.wait(300)
    sender.wait(60)
    r.shutdown()
    assert ok, f"received {count[0]} of {n}"
    return samples


def w_em_send(cs_send, cs_recv, ca, n):
    import edgemodule

    s = edgemodule.ModuleClient.create_from_connection_string(cs_send, server_verification_cert=ca)
    s.connect()
    body = b"x" * BODY
    for i in range(0, n, 1000):
        s.send_messages_to_output([body] * min(1000, n - i), "out")
    s.shutdown()
    return 0


WORKERS = {
    "em-aio": w_em_aio,
    "em-sync": lambda *a: w_em_sync(*a, batch=True),
    "em-sync-single": lambda *a: w_em_sync(*a, batch=False),
    "azure-aio": w_azure_aio,
    "azure-sync": w_azure_sync,
    "em-send": w_em_send,
    "flat": w_flat,
}


def worker(argv):
    kind = argv[0]
    if kind == "rss":
        out = w_rss(argv[1], argv[2], argv[3])
    else:
        out = WORKERS[kind](argv[1], argv[2], argv[3], int(argv[4]))
    print("RESULT " + json.dumps(out), flush=True)


def run_worker(*args, timeout=600):
    r = subprocess.run([sys.executable, __file__, "worker", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"worker {args[0]} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")


# ---------------------------------------------------------------- driver
def main():
    from devhub import DevHub

    n = int(os.environ.get("BENCH_PY_N", "20000"))
    azure_n = int(os.environ.get("BENCH_PY_AZURE_N", "2000"))
    single_n = int(os.environ.get("BENCH_PY_SINGLE_N", "5000"))
    flat_n = int(os.environ.get("BENCH_PY_RSS_N", "100000"))
    rust_route = os.environ["RUST_ROUTE"]
    results_path = pathlib.Path(os.environ.get("BENCH_RESULTS", REPO / "bench" / "RESULTS.md"))
    wheel = os.environ.get("WHEEL", "")
    log_dir = pathlib.Path(os.environ.get("BENCH_PY_LOG_DIR", REPO / "bench" / "out"))
    log_dir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as d:
        hub = DevHub(pathlib.Path(d) / "state", log_dir / "devhub-python-bench.log", mqtt_port=8883,
                     https_port=443)
        try:
            cs_s, cs_r, ca = hub.connection_string(SEND), hub.connection_string(RECV), hub.ca_pem
            rates = {}

            def measure(label, kind, count):
                secs = run_worker(kind, cs_s, cs_r, ca, count)
                rates[label] = count / secs
                print(f"{label:<34} {count:>7} msgs in {secs:7.2f} s = {rates[label]:9.0f} msg/s", flush=True)

            out = subprocess.run([rust_route, cs_s, cs_r, hub.ca_file, "8883", str(n), str(BODY)],
                                 capture_output=True, text=True, timeout=300, check=True).stdout.split()
            rates["rust core (batches)"] = int(out[1]) / float(out[2])
            print(f"{'rust core (batches)':<34} {n:>7} msgs in {float(out[2]):7.2f} s = {rates['rust core (batches)']:9.0f} msg/s")
            measure("edgemodule aio (batches)", "em-aio", n)
            measure("edgemodule sync (batches)", "em-sync", n)
            measure("edgemodule sync (one by one)", "em-sync-single", single_n)
            measure("azure-iot-device aio (10 at once)", "azure-aio", azure_n)
            measure("azure-iot-device sync (one by one)", "azure-sync", max(azure_n // 4, 200))

            rss_em = run_worker("rss", "edgemodule", hub.connection_string(RECV), ca)
            rss_az = run_worker("rss", "azure", hub.connection_string(RECV), ca)
            print("rss edgemodule", rss_em, "azure", rss_az, flush=True)
            flat = run_worker("flat", cs_s, cs_r, ca, flat_n, timeout=900)
            print("rss over received messages", flat, flush=True)
        finally:
            hub.stop()

    best_em = max(rates["edgemodule aio (batches)"], rates["edgemodule sync (batches)"])
    best_az = max(rates["azure-iot-device aio (10 at once)"], rates["azure-iot-device sync (one by one)"])
    rust = rates["rust core (batches)"]
    first, last = flat[0][1], flat[-1][1]
    mb = lambda kb: kb / 1024  # noqa: E731
    lines = [
        "<!-- python:begin (bench/python/run.sh rewrites this section) -->",
        "## Python binding (bench/python)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"CPython {platform.python_version()}; release devhub on 8883 in a private network namespace; "
        f"route benchsend/out -> benchrecv/in1, {BODY}-byte bodies, QoS 1, sender and receiver in one process.",
        "",
        "| client | msg/s |",
        "|---|---:|",
        *[f"| {k} | {v:,.0f} |" for k, v in rates.items()],
        "",
        "| ratio | value | target |",
        "|---|---:|---|",
        f"| edgemodule (best) / azure-iot-device (best) | {best_em / best_az:.1f}x | >= 20x |",
        f"| edgemodule sync one by one / azure-iot-device sync one by one | "
        f"{rates['edgemodule sync (one by one)'] / rates['azure-iot-device sync (one by one)']:.1f}x | |",
        f"| edgemodule (best) / Rust core | {best_em / rust:.2f}x | >= 0.5x |",
        "",
        "| RSS added (MB) | edgemodule | azure-iot-device |",
        "|---|---:|---:|",
        f"| by import | {mb(rss_em['import']):.1f} | {mb(rss_az['import']):.1f} |",
        f"| by one connected client | {mb(rss_em['client']):.1f} | {mb(rss_az['client']):.1f} |",
        f"| import + client (target <= 8 MB) | {mb(rss_em['import'] + rss_em['client']):.1f} | "
        f"{mb(rss_az['import'] + rss_az['client']):.1f} |",
        "",
        f"RSS of an edgemodule receiver over {flat_n:,} received messages: "
        + ", ".join(f"{c // 1000}k: {mb(kb):.1f} MB" for c, kb in flat)
        + f" (first to last sample: {mb(last - first):+.1f} MB).",
        "",
    ]
    if wheel and os.path.exists(wheel):
        lines.append(f"Release wheel `{os.path.basename(wheel)}`: {os.path.getsize(wheel):,} bytes.")
        lines.append("")
    lines.append("<!-- python:end -->")
    section = "\n".join(lines) + "\n"
    text = results_path.read_text() if results_path.exists() else "# Benchmark results\n\n"
    b, e = text.find("<!-- python:begin"), text.find("<!-- python:end -->")
    if b >= 0 and e > b:
        text = text[:b] + section + text[e + len("<!-- python:end -->\n"):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    results_path.write_text(text)
    print(section)
    print(f"written to {results_path}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2:])
    else:
        main()
