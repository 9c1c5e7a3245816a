"""A network path to PostgreSQL that can lose an answer: a TCP relay on loopback in front
of a real server, which can be told to let the next ``COMMIT`` through to the server and
then hang up on the client before the server's answer reaches it. The transaction is
committed; the client sees its connection drop (psycopg2: ``OperationalError``)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from psycopg2.extensions import make_dsn, parse_dsn

# A simple-protocol query message carrying COMMIT, as psycopg2 sends it.
_COMMIT = b"Q" + (4 + len(b"COMMIT\x00")).to_bytes(4, "big") + b"COMMIT\x00"


class PostgresLink:
    """``dsn`` reaches the server of ``target_dsn`` through this relay.

    ``lose_next_commit_answer()`` arms it: the next COMMIT reaches the server, whose
    answer is read and thrown away, and the client's connection is closed.
    ``answers_lost`` counts them.
    """

    def __init__(self, target_dsn: str) -> None:
        self._target = parse_dsn(target_dsn)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._armed = threading.Event()
        self._stopped = threading.Event()
        self.answers_lost = 0
        port = self._listener.getsockname()[1]
        self.dsn = make_dsn(target_dsn, host="127.0.0.1", port=port)

    def lose_next_commit_answer(self) -> None:
        self._armed.set()

    def start(self) -> None:
        threading.Thread(target=self._accept, name="pglink", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()

    def _upstream(self) -> socket.socket:
        host = self._target.get("host") or "/tmp"  # noqa: S108 - libpq's own default
        port = int(self._target.get("port") or 5432)
        if host.startswith("/"):
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(f"{host}/.s.PGSQL.{port}")
            return upstream
        return socket.create_connection((host, port))

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = self._upstream()
            losing = threading.Event()
            for target, args in (
                (self._to_server, (client, server, losing)),
                (self._to_client, (server, client, losing)),
            ):
                threading.Thread(target=target, args=args, daemon=True).start()

    def _to_server(
        self, client: socket.socket, server: socket.socket, losing: threading.Event
    ) -> None:
        try:
            while data := client.recv(65536):
                if _COMMIT in data and self._armed.is_set():
                    self._armed.clear()
                    losing.set()
                server.sendall(data)
        except OSError:
            pass
        finally:
            _close(server)

    def _to_client(
        self, server: socket.socket, client: socket.socket, losing: threading.Event
    ) -> None:
        try:
            while data := server.recv(65536):
                if losing.is_set():
                    # the server committed and answered; the client never hears it
                    self.answers_lost += 1
                    client.shutdown(socket.SHUT_RDWR)
                    return
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)


def _close(connection: socket.socket) -> None:
    with suppress(OSError):
        connection.close()


@contextmanager
def postgres_link(target_dsn: str) -> Iterator[PostgresLink]:
    """A running ``PostgresLink`` to ``target_dsn``'s server."""
    link = PostgresLink(target_dsn)
    link.start()
    try:
        yield link
    finally:
        link.stop()
