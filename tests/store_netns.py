"""Test helpers around the embedded store's boundary: what weed really listens on, probes as another user,
and the attacker's door (root entering the store's network namespace) that production code never offers.

``run_in_store_netns`` is how tests plant faults on purpose: root may ``nsenter -t <pid> -n`` and call the
master's admin API, as an attacker with those rights could (e.g. ``/col/delete`` to remove a bucket's volumes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@dataclass(frozen=True)
class Listeners:
    tcp_ports: frozenset[int]  # LISTEN sockets of weed, in weed's own network namespace
    unix_paths: frozenset[str]  # bound Unix sockets of weed, as absolute paths


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def weed_listeners(pid: int) -> Listeners:
    """Every listening TCP socket and bound Unix socket the process really holds, from /proc (no port list)."""
    inodes = _socket_inodes(pid)
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    cwd = os.readlink(f"/proc/{pid}/cwd")
    paths = set()
    for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[6] in inodes and not fields[7].startswith("@"):
            paths.add(os.path.normpath(os.path.join(cwd, fields[7])))
    return Listeners(frozenset(ports), frozenset(paths))


# Run as the attacker: for every target, every admin/filer/volume call; report what happened.
_PROBE = r"""
import errno, json, socket, sys
targets, bucket = json.loads(sys.argv[1]), sys.argv[2]
calls = [
    ("GET", "/col/delete?collection=" + bucket), ("GET", "/vol/grow?count=1&collection=" + bucket),
    ("GET", "/vol/vacuum"), ("GET", "/dir/assign"), ("GET", "/dir/lookup?volumeId=1"), ("GET", "/cluster/status"),
    ("POST", "/submit"), ("GET", "/buckets/" + bucket + "/"), ("PUT", "/buckets/" + bucket + "/planted.pdf"),
    ("DELETE", "/buckets/" + bucket + "/"), ("GET", "/1,0101010101"), ("POST", "/1,0101010101"),
    ("DELETE", "/1,0101010101"), ("GET", "/"), ("PUT", "/" + bucket + "/planted.pdf"),
]
out = []
for kind, where in targets:
    for method, path in calls:
        s = socket.socket(socket.AF_INET if kind == "tcp" else socket.AF_UNIX)
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", where) if kind == "tcp" else where)
        except OSError as e:
            out.append([kind, where, method, path, errno.errorcode.get(e.errno, str(e))])
            s.close()
            continue
        body = b"x" * 16
        req = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        try:
            s.sendall(req.encode() + body)
            head = s.recv(200).split(b"\r\n", 1)[0].decode(errors="replace")
        except OSError as e:
            head = "error " + errno.errorcode.get(e.errno or 0, str(e))
        s.close()
        out.append([kind, where, method, path, head])
print(json.dumps(out))
"""


def probe_as_nobody(tcp_ports: set[int], unix_paths: set[str], bucket: str) -> list[list[object]]:
    """Each call on each target, made by uid/gid 65534 from the host's network namespace."""
    targets = [["tcp", p] for p in sorted(tcp_ports)] + [["unix", p] for p in sorted(unix_paths)]
    result = subprocess.run(
        [*AS_NOBODY, sys.executable, "-I", "-S", "-c", _PROBE, json.dumps(targets), bucket],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd="/",
    )
    probes: list[list[object]] = json.loads(result.stdout)
    return probes


def run_in_store_netns(pid: int, code: str, *args: str) -> str:
    """Run Python ``code`` as root inside the store's network namespace (the attacker's position); stdout."""
    result = subprocess.run(
        ["nsenter", f"--target={pid}", "--net", "--", sys.executable, "-I", "-S", "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


HTTP_GET = r"""
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
        print(r.status, r.read().decode(errors="replace"))
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode(errors="replace"))
"""


def http_get_in_store_netns(pid: int, url: str) -> tuple[int, str]:
    """``GET url`` from inside the store's namespace, as root (planting faults through the master port)."""
    status, _, body = run_in_store_netns(pid, HTTP_GET, url).partition(" ")
    return int(status), body
