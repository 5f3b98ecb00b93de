"""A Unix-socket relay to the test PostgreSQL, in a directory another account may reach.

The embedded test server (tests/fixtures_db.py) listens only on a socket inside its data
directory, which PostgreSQL keeps private to its own account. A test that runs obs-sync as
another account (the service user of docs/operations.md) reaches the same server through
this relay: bytes are copied both ways, unchanged, so the client still speaks to the real
server (authentication, errors and all).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def _serve(listener: socket.socket, server_socket: str) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # the listener was closed
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(server_socket)
        except OSError:
            client.close()
            upstream.close()
            continue
        for pair in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=pair, daemon=True).start()


@contextlib.contextmanager
def reachable_url(database_url: str, directory: Path) -> Iterator[str]:
    """``database_url`` as any account can use it: unchanged over TCP; over a Unix socket,
    pointed at a relay in ``directory`` (made traversable by all)."""
    url = make_url(database_url)
    host = url.query.get("host")
    if not isinstance(host, str) or not host.startswith("/"):
        yield database_url
        return
    port = url.port or 5432
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o711)
    path = directory / f".s.PGSQL.{port}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    path.chmod(0o777)  # like PostgreSQL's own socket (unix_socket_permissions)
    listener.listen(16)
    thread = threading.Thread(
        target=_serve, args=(listener, f"{host}/.s.PGSQL.{port}"), daemon=True
    )
    thread.start()
    try:
        relayed = url.update_query_dict({"host": str(directory)})
        yield relayed.render_as_string(hide_password=False)
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (Linux)
        listener.close()
        thread.join(timeout=10)
        path.unlink(missing_ok=True)
