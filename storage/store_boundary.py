"""The boundary around the embedded SeaweedFS: a private network namespace, entered with util-linux tools.

``weed server`` opens eight TCP ports, and its master port answers anonymous admin calls (``/col/delete``
removes a bucket's volumes, locked versions included). Run inside a fresh network namespace, none of them is
reachable from the host's loopback: the service relays one port to the S3 Unix socket instead.

The command is ``unshare --user --map-root-user --net --mount -- /bin/sh -c '<mount> --bind <run>/tmp /tmp &&
<ip> link set lo up && exec "$0" "$@"' weed server ...``: the same line works as root and as an unprivileged
user (user namespaces enabled), and ``unshare`` and ``sh`` both exec, so the process started *is* weed and
signals reach it directly. The private mount namespace gives weed its own ``/tmp``, a 0700 directory in the
store's run directory: weed hard-codes its gRPC sockets' paths as ``/tmp/seaweedfs-*-grpc-<port>.sock``, and
in the shared ``/tmp`` another user could squat them. Python 3.11 has no ``os.unshare``, hence the tools.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

Boundary = Literal["netns", "unprotected"]

# Non-root PATHs often lack the sbin directories where `ip` lives.
_TOOL_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
)


class BoundaryUnavailable(RuntimeError):
    """No private network namespace can be made here; the message says why."""


def find_tool(name: str) -> str | None:
    return shutil.which(name, path=_TOOL_PATH)


def netns_prefix(unshare: str, ip: str, mount: str, private_tmp: Path, keep: Iterable[Path]) -> list[str]:
    """Arguments that run the command appended to them in new user, network and mount namespaces: ``lo`` up
    and ``private_tmp`` mounted over ``/tmp``. Each directory in ``keep`` (the store's root, weed's own) stays
    where it was even when it lies under ``/tmp``: it is held open before the mount and bound back onto its
    own path after it (through ``/proc/self/fd``, which ``--no-canonicalize`` lets mount follow to the
    directory itself, not to its name)."""
    q = shlex.quote
    under = {path for path in keep if path.is_relative_to("/tmp")}  # noqa: S108 - the /tmp weed is given
    outermost = sorted(p for p in under if not any(p != other and p.is_relative_to(other) for other in under))
    steps = [f"exec {3 + i}<{q(str(path))}" for i, path in enumerate(outermost)]
    steps.append(f"{q(mount)} --bind {q(str(private_tmp))} /tmp")
    for i, path in enumerate(outermost):
        steps += [
            f"umask 077 && mkdir -p {q(str(path))}",
            f"{q(mount)} --no-canonicalize --bind /proc/self/fd/{3 + i} {q(str(path))}",
            f"exec {3 + i}<&-",
        ]
    script = " && ".join([*steps, f"{q(ip)} link set lo up", 'exec "$0" "$@"'])
    return [unshare, "--user", "--map-root-user", "--net", "--mount", "--", "/bin/sh", "-c", script]


def netns_command(unshare: str | None, private_tmp: Path, keep: Iterable[Path]) -> list[str]:
    """The prefix for this machine, after checking it really works; raise :class:`BoundaryUnavailable`."""
    unshare = unshare or find_tool("unshare")
    ip = find_tool("ip")
    mount = find_tool("mount")
    if unshare is None or not os.access(unshare, os.X_OK):
        raise BoundaryUnavailable(f"util-linux unshare not found ({unshare or 'not on PATH'})")
    if ip is None:
        raise BoundaryUnavailable("iproute2 `ip` not found (needed to bring lo up inside the namespace)")
    if mount is None:
        raise BoundaryUnavailable("util-linux mount not found (needed to give weed a private /tmp)")
    prefix = netns_prefix(unshare, ip, mount, private_tmp, keep)
    try:
        probe = subprocess.run(  # noqa: S603 - fixed argument list
            [*prefix, "/bin/sh", "-c", "exit 0"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BoundaryUnavailable(f"{unshare} failed: {exc}") from exc
    if probe.returncode != 0:
        detail = (probe.stderr or probe.stdout).decode(errors="replace").strip()
        raise BoundaryUnavailable(
            f"{unshare} --user --map-root-user --net --mount failed (exit {probe.returncode}): "
            f"{detail or 'no message'}; "
            "user namespaces may be disabled (sysctl user.max_user_namespaces / kernel.unprivileged_userns_clone)"
        )
    return prefix


def nsenter_prefix(pid: int) -> list[str]:
    """Run a command in the namespace of ``pid`` as its owner (root is not needed; the store's own user is).

    Used by the readiness probe only: the master's volume count is reachable from inside alone.
    """
    nsenter = find_tool("nsenter")
    if nsenter is None:
        raise BoundaryUnavailable("util-linux nsenter not found")
    return [nsenter, f"--target={pid}", "--user", "--net", "--preserve-credentials", "--"]


def pid_is_weed_of(pid: int, data_path: Path) -> bool:
    """Whether ``pid`` is a weed serving ``data_path`` (not a recycled pid of something else)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"-dir={data_path}".encode() in args


def terminate_group(pid: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM ``pid``, wait up to ``timeout``, then SIGKILL its process group (it leads one); reap our child."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None if proc is not None else _gone(pid):
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # weed and anything it left in its group
    if proc is not None:
        proc.wait()


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie (reaped here if it is our own child)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1]
    except (OSError, IndexError):
        return True
    return state in {"Z", "X"}
