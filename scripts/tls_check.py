"""wss:// and https:// against an independent TLS client: Python's `ssl`
module under `websockets`, trusting only an authority made here with the
openssl command.

Checks that a WebSocket over wss:// gets the topic's snapshot and an update
published over https://, then that the same client refuses what it should:
a certificate from another authority, a certificate for another name, and
plain ws:// to the TLS port, which the server answers 400. A server that
does not speak TLS, or serves a certificate the authority did not sign,
fails the first check.

Usage: python tls_check.py PATH_TO_STATECAST (a build with --features tls)
"""
import json
import ssl
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect


def openssl(cwd, *args):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


def authority(cwd, name):
    """A throwaway authority: NAME.pem and NAME.key."""
    openssl(cwd, "req", "-x509", *EC, "-days", "1", "-keyout", f"{name}.key",
            "-out", f"{name}.pem", "-subj", f"/CN=statecast {name}")


def server_cert(cwd, ca, name, serial):
    """A certificate for 127.0.0.1 and localhost, signed by `ca`."""
    openssl(cwd, "req", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", "/CN=127.0.0.1")
    Path(cwd, "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(cwd, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-set_serial", str(serial), "-days", "1", "-out", f"{name}.pem", "-extfile", "ext.cnf")


def start(binary, *flags):
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--log-level", "info", *flags],
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "listening on " in line:
            # Keep reading, so a full pipe never stalls the server.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, line.split("listening on ")[1].split()[0]
    raise SystemExit("statecast did not start")


def publish(addr, context, topic, value):
    body = json.dumps(value).encode()
    req = urllib.request.Request(f"https://{addr}/api/v1/publish/{topic}", data=body, method="POST")
    assert urllib.request.urlopen(req, context=context, timeout=5).status == 200


def refused(what, expected, attempt):
    """`attempt` must raise `expected`."""
    try:
        attempt()
    except expected as e:
        print(f"ok: {what}: {type(e).__name__}: {e}")
        return e
    raise AssertionError(f"{what}: no {expected.__name__}")


def main():
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="statecast-tls-check-") as d:
        authority(d, "ca")
        authority(d, "stranger")
        server_cert(d, "ca", "server", 0x2001)
        trusting = ssl.create_default_context(cafile=f"{d}/ca.pem")
        other = ssl.create_default_context(cafile=f"{d}/stranger.pem")

        proc, addr = start(binary, "--tls-cert", f"{d}/server.pem", "--tls-key", f"{d}/server.key")
        try:
            url = f"wss://{addr}/api/v1/ws/queue"
            with connect(url, ssl=trusting, open_timeout=5) as ws:
                tls = ws.socket.version()
                assert tls in ("TLSv1.2", "TLSv1.3"), tls
                snapshot = json.loads(ws.recv(timeout=5))
                assert snapshot["type"] == "queue_update", snapshot
                publish(addr, trusting, "queue", {"phases": [], "total": 41, "paused": False})
                update = json.loads(ws.recv(timeout=5))
                assert update["data"]["total"] == 41, update
                ws.send(json.dumps({"type": "ping", "timestamp": 1764123456}))
                pong = json.loads(ws.recv(timeout=5))
                assert pong == {"type": "pong", "timestamp": 1764123456}, pong
            print(f"ok: wss:// over {tls}: the snapshot, an https:// publish, a pong")

            refused("a client trusting another authority", ssl.SSLCertVerificationError,
                    lambda: connect(url, ssl=other, open_timeout=5).close())
            refused("a certificate for another name", ssl.SSLCertVerificationError,
                    lambda: connect(url, ssl=trusting, server_hostname="elsewhere.test",
                                    open_timeout=5).close())
            plain = refused("plain ws:// to the TLS port", InvalidStatus,
                            lambda: connect(f"ws://{addr}/api/v1/ws/queue", open_timeout=5).close())
            assert plain.response.status_code == 400, plain.response.status_code
            assert b"this port speaks TLS" in plain.response.body, plain.response.body

            # Still serving after all that.
            with connect(url, ssl=trusting, open_timeout=5) as ws:
                assert json.loads(ws.recv(timeout=5))["data"]["total"] == 41
        finally:
            proc.terminate()
            proc.wait()
    print("wss:// and https:// with Python's websockets and ssl: ok")


if __name__ == "__main__":
    main()
