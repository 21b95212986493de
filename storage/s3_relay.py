"""A loopback TCP port relayed, byte for byte, to a Unix socket: the one door into the embedded store.

The embedded SeaweedFS serves S3 on a Unix socket inside a private network namespace. Presigned URLs name a
``http://127.0.0.1:<port>`` address, so the service listens on that port and pipes every connection to the
socket unchanged (Host header and SigV4 signature included). Each direction of a connection is one thread
moving data with ``os.splice`` through a pipe (the bytes stay in the kernel), falling back to large
``recv_into``/``sendall`` copies where splice is not available.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import threading
from collections.abc import Callable

_CHUNK = 1 << 20
_SPLICE = hasattr(os, "splice")


def _pump_splice(src: socket.socket, dst: socket.socket) -> None:
    read_end, write_end = os.pipe()
    try:
        with contextlib.suppress(OSError):  # a bigger pipe means fewer system calls; not essential
            fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), _CHUNK)
        src_fd, dst_fd = src.fileno(), dst.fileno()
        while True:
            moved = os.splice(src_fd, write_end, _CHUNK)
            if moved == 0:
                return
            while moved:
                moved -= os.splice(read_end, dst_fd, moved)
    finally:
        os.close(read_end)
        os.close(write_end)


def _pump_copy(src: socket.socket, dst: socket.socket) -> None:
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    while True:
        n = src.recv_into(buffer)
        if n == 0:
            return
        dst.sendall(view[:n])


class UnixSocketRelay:
    """Listen on ``127.0.0.1:port`` and pipe each connection to the Unix socket at ``target``.

    ``target`` is a callable returning the socket path, so a path too long for ``sockaddr_un`` can be reached
    through ``/proc/self/fd/<dirfd>/...``. ``stop()`` closes the listener and every open connection and joins
    every thread it started.
    """

    def __init__(self, port: int, target: Callable[[], str], host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self._target = target
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
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

    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        while not self._closing:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed by stop()
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
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._closing:
                    client.close()
                    upstream.close()
                    return
                self._conns.update((client, upstream))
            pair = _Pair(client, upstream, self._forget)
            self._spawn(pair.pump, "s3-relay-up", client, upstream)
            self._spawn(pair.pump, "s3-relay-down", upstream, client)

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            for s in socks:
                self._conns.discard(s)

    def stop(self, timeout: float = 5) -> None:
        self._closing = True
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)


class _Pair:
    """Both directions of one relayed connection; the second direction to finish closes both sockets."""

    def __init__(self, a: socket.socket, b: socket.socket, forget: Callable[..., None]) -> None:
        self._a, self._b = a, b
        self._forget = forget
        self._done = 0
        self._lock = threading.Lock()

    def pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            if _SPLICE:
                try:
                    _pump_splice(src, dst)
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                        raise
                    _pump_copy(src, dst)
            else:
                _pump_copy(src, dst)
        except OSError:
            pass  # a reset or a shutdown by stop(): end this direction
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)  # pass the end of stream on (HTTP keeps it half-open otherwise)
            with self._lock:
                self._done += 1
                last = self._done == 2
            if last:
                self._forget(self._a, self._b)
                self._a.close()
                self._b.close()
