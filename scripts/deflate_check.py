"""permessage-deflate against an independent implementation: Python's
`websockets` client, which offers the extension by default and compresses
what it sends once it is agreed.

Checks that the offer is accepted with no context takeover either way, that
a large snapshot arrives compressed (fewer bytes on the wire than the JSON)
and inflates to a message that matches the plain subscriber's, that a
compressed ping from the client is answered, and that `--no-compression`
declines the offer.

Usage: python deflate_check.py PATH_TO_STATECAST
"""
import json
import subprocess
import sys
import urllib.request

from websockets.sync.client import connect


def start(binary, *flags):
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--log-level", "info", *flags],
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "listening on " in line:
            return proc, line.split("listening on ")[1].split()[0]
    raise SystemExit("statecast did not start")


def publish(addr, topic, value):
    body = json.dumps(value).encode()
    req = urllib.request.Request(f"http://{addr}/api/v1/publish/{topic}", data=body, method="POST")
    assert urllib.request.urlopen(req).status == 200


def history(total):
    """A workflow-history value of 50 items, each with the contract's
    identity and numeric fields, varied as real ones are."""
    items = [{
        "id": 1000 + i, "adw_id": f"{(i * 2654435761) % 2**32:08x}", "issue_number": 100 + i * 7 % 400,
        "status": "failed" if i % 8 == 0 else "completed", "duration_seconds": 300 + i * 97 % 4000,
        "retry_count": i % 6 == 0, "steps_completed": 1 + i % 9, "steps_total": 9,
        "input_tokens": 20000 + i * 4099 % 200000, "output_tokens": 2000 + i * 613 % 30000,
        "cached_tokens": i * 1999 % 20000, "total_tokens": 22000 + i * 4712 % 230000,
        "cache_efficiency_percent": i * 37 % 100, "actual_cost_total": round(0.1 + i * 0.037 % 3, 2),
        "hour_of_day": i % 24,
    } for i in range(50)]
    analytics = {"total_workflows": total, "completed_workflows": total, "failed_workflows": 0,
                 "avg_duration_seconds": 1900.5, "success_rate_percent": 100.0,
                 "workflows_by_model": {}, "workflows_by_template": {}}
    return {"workflows": items, "total_count": total, "analytics": analytics}


def agreed(ws):
    return [type(e).__name__ for e in ws.protocol.extensions]


def main():
    binary = sys.argv[1]
    proc, addr = start(binary)
    try:
        url = f"ws://{addr}/api/v1/ws/workflow-history"
        with connect(url) as ws, connect(url, compression=None) as plain:
            assert agreed(ws) == ["PerMessageDeflate"], agreed(ws)
            deflate = ws.protocol.extensions[0]
            # Both directions without context takeover: what the server answered.
            assert deflate.local_no_context_takeover and deflate.remote_no_context_takeover
            assert agreed(plain) == []
            json.loads(ws.recv(timeout=5))
            json.loads(plain.recv(timeout=5))

            value = history(50)
            publish(addr, "workflow-history", value)
            compressed = json.loads(ws.recv(timeout=5))
            uncompressed = json.loads(plain.recv(timeout=5))
            assert compressed == uncompressed, "the same message either way"
            assert compressed["data"] == value

            # A compressed ping (websockets compresses every frame it sends).
            ws.send(json.dumps({"type": "ping", "timestamp": 1764123456}))
            pong = json.loads(ws.recv(timeout=5))
            assert pong == {"type": "pong", "timestamp": 1764123456}, pong

        # Bytes on the wire: count what the socket delivers for one publish.
        with connect(url, max_size=None) as ws:
            ws.recv(timeout=5)
            received = []
            original = ws.protocol.receive_data

            def counting(data):
                received.append(len(data))
                return original(data)

            ws.protocol.receive_data = counting
            publish(addr, "workflow-history", history(51))
            message = ws.recv(timeout=5)
            wire = sum(received)
            assert wire * 4 <= len(message), f"{wire} bytes on the wire for {len(message)}"
            print(f"permessage-deflate: {len(message)} bytes of JSON arrived as {wire} "
                  f"({wire * 100 / len(message):.0f}%)")
    finally:
        proc.terminate()
        proc.wait()

    proc, addr = start(binary, "--no-compression")
    try:
        with connect(f"ws://{addr}/api/v1/ws/queue") as ws:
            assert agreed(ws) == [], agreed(ws)
            json.loads(ws.recv(timeout=5))
    finally:
        proc.terminate()
        proc.wait()
    print("permessage-deflate with Python websockets: ok")


if __name__ == "__main__":
    main()
