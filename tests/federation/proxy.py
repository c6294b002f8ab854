"""A recording TCP proxy for the tests: everything that crosses between sites passes it, and
what crossed can be read back (both directions, in order)."""

from __future__ import annotations

import contextlib
import socket
import threading


class RecordingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.sent = bytearray()  # client -> upstream
        self.received = bytearray()  # upstream -> client
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._stopped = False
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            threading.Thread(
                target=self._pump, args=(client, upstream, self.sent), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, self.received), daemon=True
            ).start()

    def _pump(self, source: socket.socket, target: socket.socket, record: bytearray) -> None:
        try:
            while chunk := source.recv(65536):
                with self._lock:
                    record.extend(chunk)
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, target):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def switch(self, upstream_port: int) -> None:
        """Send new connections to ``upstream_port`` and drop the open ones."""
        self.upstream_port = upstream_port
        with self._lock:
            live, self._open = self._open, []
        for s in live:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def traffic(self) -> bytes:
        with self._lock:
            return bytes(self.sent) + bytes(self.received)

    def close(self) -> None:
        self._stopped = True
        self._server.close()
