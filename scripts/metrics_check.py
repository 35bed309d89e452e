"""/metrics against a real Prometheus text parser (prometheus_client), with
counts checked against what this script did to a fresh server.

Usage: python metrics_check.py PATH_TO_STATECAST
"""
import socket
import subprocess
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def start(binary):
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--log-level", "info"],
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "listening on " in line:
            return proc, line.split("listening on ")[1].split()[0]
    raise SystemExit("statecast did not start")


def subscribe(addr, path):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    assert s.recv(4096).startswith(b"HTTP/1.1 101"), path
    return s


def post(addr, path, body):
    req = urllib.request.Request(f"http://{addr}{path}", data=body.encode(), method="POST")
    try:
        return urllib.request.urlopen(req).status
    except urllib.error.HTTPError as e:
        return e.code


def main():
    proc, addr = start(sys.argv[1])
    try:
        ws = [subscribe(addr, "/api/v1/ws/queue") for _ in range(2)]
        sse = socket.create_connection(tuple([addr.rsplit(":", 1)[0], int(addr.rsplit(":", 1)[1])]))
        sse.sendall(b"GET /api/v1/sse/routes HTTP/1.1\r\nHost: localhost\r\n\r\n")
        for i in range(3):
            assert post(addr, "/api/v1/publish/queue", '{"phases":[],"total":%d}' % i) == 200
            time.sleep(0.05)
        assert post(addr, "/api/v1/publish/queue", "null") == 422
        assert post(addr, "/api/v1/publish/Queue", "{}") == 400
        try:
            urllib.request.urlopen(f"http://{addr}/api/v1/ws/nope")
        except urllib.error.HTTPError as e:
            assert e.code in (400, 404), e.code
        time.sleep(0.2)
        text = urllib.request.urlopen(f"http://{addr}/metrics").read().decode()
        samples = {}
        families = list(text_string_to_metric_families(text))
        for family in families:
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        def value(name, **labels):
            return samples[(name, tuple(sorted(labels.items())))]
        checks = [
            (value("statecast_connections", transport="websocket"), 2),
            (value("statecast_connections", transport="sse"), 1),
            (value("statecast_topic_subscribers", topic="queue"), 2),
            (value("statecast_publishes_total", topic="queue"), 3),
            (value("statecast_refused_publishes_total", reason="validation"), 1),
            (value("statecast_refused_publishes_total", reason="invalid"), 1),
            (value("statecast_publish_to_write_seconds_count"), 6),
            (value("statecast_handshakes_total", outcome="rejected"), 1),
            (value("statecast_handshakes_total", outcome="subscribed"), 3),
        ]
        for got, want in checks:
            assert got == want, (got, want, text)
        assert value("statecast_bytes_out_total") > 0
        assert value("statecast_snapshot_age_seconds", topic="queue") < 60
        print(f"metrics: {len(families)} families parsed by prometheus_client, counts as expected")
        for s in ws:
            s.close()
        sse.close()
    finally:
        proc.terminate()
        proc.wait()


main()
