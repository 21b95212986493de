"""A loopback TCP port relayed, byte for byte, to a Unix socket: the one door into the embedded store.

The embedded SeaweedFS serves S3 on a Unix socket inside a private network namespace. Presigned URLs name a
``http://127.0.0.1:<port>`` address, so the service listens on that port and pipes every connection to the
socket unchanged (Host header and SigV4 signature included). Each direction of a connection is one thread
moving data with ``os.splice`` through a pipe (the bytes stay in the kernel), falling back to large
``recv_into``/``sendall`` copies where splice is not available.

The port is open to every local process, unauthenticated, and each connection costs two threads and six
descriptors (two sockets, two pipes), so what it holds is bounded: at most ``max_connections`` at once, and a
connection that moves no byte either way for ``idle_seconds`` is closed (a write that makes no progress for
that long ends it too). A new connection beyond the cap evicts the longest idle one (idle at least
``EVICTABLE_SECONDS``, so no transfer in progress is cut), or is closed at once when every one is busy. So
idle connections cannot lock real S3 traffic out, and threads stay at most ``2 * max_connections + 1``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

_CHUNK = 1 << 20
_SPLICE = hasattr(os, "splice")
EVICTABLE_SECONDS = 1.0


Ready = Callable[[], bool]  # waits until the source is readable; False: the connection went idle, end it
Moved = Callable[[], None]  # bytes moved: the connection is not idle


def _pump_splice(src: socket.socket, dst: socket.socket, ready: Ready, moved_some: Moved) -> None:
    read_end, write_end = os.pipe()
    try:
        with contextlib.suppress(OSError):  # a bigger pipe means fewer system calls; not essential
            fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), _CHUNK)
        src_fd, dst_fd = src.fileno(), dst.fileno()
        while ready():
            moved = os.splice(src_fd, write_end, _CHUNK)
            if moved == 0:
                return
            while moved:
                moved -= os.splice(read_end, dst_fd, moved)
                moved_some()
    finally:
        os.close(read_end)
        os.close(write_end)


def _pump_copy(src: socket.socket, dst: socket.socket, ready: Ready, moved_some: Moved) -> None:
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    while ready():
        n = src.recv_into(buffer)
        if n == 0:
            return
        dst.sendall(view[:n])
        moved_some()


def _send_timeout(sock: socket.socket, seconds: float) -> None:
    """A write that makes no progress for ``seconds`` fails (the socket stays blocking for Python)."""
    whole = int(seconds)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", whole, int((seconds - whole) * 1e6)))


class UnixSocketRelay:
    """Listen on ``127.0.0.1:port`` and pipe each connection to the Unix socket at ``target``.

    ``target`` is a callable returning the socket path, so a path too long for ``sockaddr_un`` can be reached
    through ``/proc/self/fd/<dirfd>/...``. ``stop()`` closes the listener and every open connection and joins
    every thread it started.
    """

    def __init__(
        self,
        port: int,
        target: Callable[[], str],
        host: str = "127.0.0.1",
        *,
        max_connections: int = 256,
        idle_seconds: float = 60.0,
    ) -> None:
        self.host, self.port = host, port
        self.max_connections, self.idle_seconds = max_connections, idle_seconds
        self._target = target
        self._listener: socket.socket | None = None
        self._lock = threading.Condition()
        self._pairs: set[_Pair] = set()
        self._threads: set[threading.Thread] = set()
        self._closing = False

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
            listener.listen(128)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._closing = False
        self._spawn(self._accept_loop, "s3-relay-accept")

    @property
    def running(self) -> bool:
        return self._listener is not None and not self._closing

    def thread_count(self) -> int:
        with self._lock:
            return sum(t.is_alive() for t in self._threads)

    def connection_count(self) -> int:
        with self._lock:
            return len(self._pairs)

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=self._run, args=(target, *args), name=name, daemon=True)
        with self._lock:  # started under the lock: stop() never sees a thread it cannot join
            self._threads.add(thread)
            thread.start()

    def _run(self, target: Callable[..., None], *args: object) -> None:
        try:
            target(*args)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _make_room(self) -> bool:
        """Below the cap, evicting the longest idle connection if need be; False when every one is busy."""
        with self._lock:
            if len(self._pairs) < self.max_connections:
                return True
            victim = min(self._pairs, key=lambda pair: pair.last_active)
            if time.monotonic() - victim.last_active < EVICTABLE_SECONDS:
                return False
            victim.end()
            return self._lock.wait_for(lambda: len(self._pairs) < self.max_connections, timeout=5)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        while not self._closing:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed by stop()
            if not self._make_room():
                client.close()
                continue
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self._target())
            except OSError:
                client.close()
                upstream.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _CHUNK)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _CHUNK)
                _send_timeout(s, self.idle_seconds)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = _Pair(client, upstream, self.idle_seconds, self._forget)
            with self._lock:
                if self._closing:
                    client.close()
                    upstream.close()
                    return
                self._pairs.add(pair)
            self._spawn(pair.pump, "s3-relay-up", client, upstream)
            self._spawn(pair.pump, "s3-relay-down", upstream, client)

    def _forget(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs.discard(pair)
            self._lock.notify_all()

    def stop(self, timeout: float = 5) -> None:
        self._closing = True
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            pairs = list(self._pairs)
            threads = list(self._threads)
        for pair in pairs:
            pair.end()
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)


class _Pair:
    """Both directions of one relayed connection; the second direction to finish closes both sockets."""

    def __init__(
        self, a: socket.socket, b: socket.socket, idle_seconds: float, forget: Callable[[_Pair], None]
    ) -> None:
        self._a, self._b = a, b
        self._idle = idle_seconds
        self._forget = forget
        self._done = 0
        self._lock = threading.Lock()
        self.last_active = time.monotonic()

    def end(self) -> None:
        """Cut both directions (each pump sees the end of its stream and stops)."""
        for s in (self._a, self._b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _moved(self) -> None:
        self.last_active = time.monotonic()

    def _readable(self, src: socket.socket) -> Ready:
        poller = select.poll()
        poller.register(src, select.POLLIN)

        def ready() -> bool:
            while True:
                left = self.last_active + self._idle - time.monotonic()
                if left <= 0:  # neither direction moved a byte for idle_seconds: end both
                    self.end()
                    return False
                if poller.poll(left * 1000 + 1):
                    return True

        return ready

    def pump(self, src: socket.socket, dst: socket.socket) -> None:
        ready = self._readable(src)
        try:
            if _SPLICE:
                try:
                    _pump_splice(src, dst, ready, self._moved)
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                        raise
                    _pump_copy(src, dst, ready, self._moved)
            else:
                _pump_copy(src, dst, ready, self._moved)
        except OSError:
            pass  # a reset, a write that made no progress, or a shutdown by stop(): end this direction
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)  # pass the end of stream on (HTTP keeps it half-open otherwise)
            with self._lock:
                self._done += 1
                last = self._done == 2
            if last:
                self._a.close()
                self._b.close()
                self._forget(self)
