#!/usr/bin/env python3
"""Runs the Autobahn test cases (through kosoku) against the statecast binary.

statecast pushes; it never echoes. So a case applies when none of its
expected outcomes needs an echoed message: pings, reserved bits, opcodes,
control-frame fragmentation, invalid UTF-8 and close handling. The set is
derived from each case's own expectation, not from what passed, and every
applicable case must pass. Performance (9.*) and compression (12.*, 13.*)
cases are not run: they only measure echo.

Usage: conformance.py PATH_TO_STATECAST [REPORT_DIR]
"""

import json
import pathlib
import re
import shutil
import subprocess
import sys
import time

# The count read off the case files for kosoku 0.1.0; fewer means the
# selection broke, not that the server got better.
EXPECTED_APPLICABLE = 151


def start_server(binary):
    server = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--preset", "none", "--any-topic",
         "--log-level", "info"],
        stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = server.stderr.readline()
        if not line:
            break
        match = re.search(r"listening on (\S+)", line)
        if match:
            return server, match.group(1)
    server.kill()
    sys.exit("conformance: statecast did not start")


def main():
    binary = sys.argv[1]
    reports = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "target/conformance")
    shutil.rmtree(reports, ignore_errors=True)
    server, addr = start_server(binary)
    try:
        # The topic never publishes, so the server sends nothing unsolicited.
        url = f"ws://{addr}/api/v1/ws/conformance"
        subprocess.run(
            [str(pathlib.Path(sys.executable).parent / "kosoku"), url,
             "-x", "9.*", "-x", "12.*", "-x", "13.*", "-p", "2", "-o", str(reports)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
    finally:
        server.terminate()
        code = server.wait(timeout=10)
    if code != 0:
        sys.exit(f"conformance: statecast exited with {code} on SIGTERM")

    passed, failed, skipped = [], [], 0
    for path in sorted(reports.glob("*.json")):
        case = json.loads(path.read_text())
        if not isinstance(case, dict) or "id" not in case:
            continue
        # `expected` maps a verdict to the events that earn it, e.g.
        # {"OK": [["message", "Hello", false]]}. A case applies when some
        # acceptable outcome has no echoed message in it.
        outcomes = case["expected"].values()
        if not any(all(event[0] != "message" for event in events) for events in outcomes):
            skipped += 1
            continue
        ok = (case["behavior"] in ("OK", "NON-STRICT", "INFORMATIONAL")
              and case["behaviorClose"] in ("OK", "INFORMATIONAL"))
        (passed if ok else failed).append(case)

    for case in failed:
        print(f"FAILED {case['id']}: behavior={case['behavior']} "
              f"close={case['behaviorClose']} {case.get('result', '')}")
    print(f"{skipped} cases need an echo and do not apply; reports in {reports}/")
    total = len(passed) + len(failed)
    if total != EXPECTED_APPLICABLE:
        print(f"expected {EXPECTED_APPLICABLE} applicable cases, found {total}")
        failed.append(None)
    print(f"conformance: {len(passed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
