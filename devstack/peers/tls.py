"""PostgreSQL over TLS on this machine, as the functions meet it on AWS: a throwaway CA
made for one run, and a TLS front that presents a certificate of that CA in front of the
embedded server (whose build has no TLS) and passes the plain protocol on to it.

The functions then connect as on AWS, ``sslmode=verify-full``, with the run's CA as their
root certificates instead of the RDS CA bundle: the server's certificate must chain to it
and name the host they connect to. The local stack, the rehearsal and the tests' pipeline
use it (docs/database-tls.md).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from psycopg2.extensions import make_dsn, parse_dsn

# The first message of a PostgreSQL client that wants TLS, or GSS encryption.
SSL_REQUEST = struct.pack("!ii", 8, 80877103)
GSS_REQUEST = struct.pack("!ii", 8, 80877104)
# Where the front listens, and what a client connecting by name connects to.
LOOPBACK = "127.0.0.1"
# The name the local stack's and the tests' functions connect to (resolved to LOOPBACK).
LOCAL_HOST_NAME = "localhost"


@dataclass(frozen=True)
class ServerCertificate:
    """A server's certificate and its private key, as files."""

    certificate: Path
    key: Path


class ThrowawayCa:
    """A CA of its own, made under ``directory`` (its key never leaves that directory):
    ``certificate`` is what a client trusts, ``issue`` signs a server's certificate."""

    def __init__(self, directory: Path, name: str = "Escalator throwaway CA") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        self._certificate = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(certificate_sign=True), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        self.certificate = directory / "ca.crt"
        self.certificate.write_bytes(_pem(self._certificate))

    def issue(self, host: str) -> ServerCertificate:
        """A server certificate for ``host`` (a name, or an IP address), signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        try:
            alternative: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            alternative = x509.DNSName(host)
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(certificate_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([alternative]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        stem = self.directory / f"server-{host}"
        files = ServerCertificate(Path(f"{stem}.crt"), Path(f"{stem}.key"))
        files.certificate.write_bytes(_pem(certificate))
        files.key.touch(mode=0o600)
        files.key.write_bytes(_private_pem(key))
        return files


def _key_usage(*, certificate_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not certificate_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certificate_sign,
        crl_sign=certificate_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class TlsFront:
    """TLS on 127.0.0.1:<port>, terminated here with ``server``'s certificate, the plain
    protocol passed on to the server of ``upstream_dsn`` (its Unix socket, or its host
    and port). Like RDS with ``rds.force_ssl``, it refuses clients that do not ask for
    TLS (``refused`` counts them). ``admit`` may refuse a client after its startup
    message (the rehearsal's endpoint checks IAM tokens there)."""

    def __init__(self, upstream_dsn: str, server: ServerCertificate) -> None:
        self._upstream = parse_dsn(upstream_dsn)
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(str(server.certificate), str(server.key))
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        self.refused = 0  # clients that did not ask for TLS
        self.admitted = 0  # clients passed on to the server
        threading.Thread(target=self._accept, name="tls-front", daemon=True).start()

    def url(self, dsn: str, *, host: str, root_certificates: Path) -> str:
        """``dsn`` (its database, user and password) through this front, as the functions
        connect on AWS: ``verify-full`` against ``root_certificates`` for ``host``."""
        address = {} if host == LOOPBACK else {"hostaddr": LOOPBACK}
        return make_dsn(
            dsn,
            host=host,
            port=self.port,
            sslmode="verify-full",
            sslrootcert=str(root_certificates),
            **address,
        )

    def admit(self, client: ssl.SSLSocket, startup: bytes) -> bool:
        """Whether to pass the client on to the server (it has sent ``startup``); a
        refusal answers the client itself."""
        return True

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            # Every message is passed on at once (Nagle's algorithm would hold a small
            # answer until the client's delayed acknowledgement: tens of milliseconds).
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        connection = client
        try:
            request = receive(client, 8)
            if request == GSS_REQUEST:  # no GSS encryption here: the client asks for TLS next
                client.sendall(b"N")
                request = receive(client, 8)
            if request != SSL_REQUEST:
                self.refused += 1
                client.close()
                return
            client.sendall(b"S")
            connection = secure = self._tls.wrap_socket(client, server_side=True)
            startup = message(secure)
            if not self.admit(secure, startup):
                secure.close()
                return
            upstream = self._connect_upstream()
            upstream.sendall(startup)
            self.admitted += 1
        except (OSError, ValueError):  # the client went away, or TLS failed, or the server
            connection.close()
            return
        for source, target in ((secure, upstream), (upstream, secure)):
            threading.Thread(target=_pump, args=(source, target), daemon=True).start()

    def _connect_upstream(self) -> socket.socket:
        host = self._upstream.get("host") or "/tmp"  # noqa: S108 - libpq's own default
        port = int(self._upstream.get("port") or 5432)
        if host.startswith("/"):
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(f"{host}/.s.PGSQL.{port}")
            return upstream
        return socket.create_connection((host, port))


def message(connection: socket.socket) -> bytes:
    """One length-prefixed message (its length included): a startup or password message."""
    head = receive(connection, 4)
    if len(head) < 4:
        raise ValueError("the connection closed")
    (length,) = struct.unpack("!i", head)
    if not 4 <= length <= 10_000:
        raise ValueError(f"a message of {length} bytes")
    body = receive(connection, length - 4)
    if len(body) < length - 4:
        raise ValueError("the connection closed")
    return head + body


def receive(connection: socket.socket, size: int) -> bytes:
    """``size`` bytes, or fewer if the connection closes first."""
    data = b""
    while len(data) < size and (chunk := connection.recv(size - len(data))):
        data += chunk
    return data


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class LocalTls:
    """PostgreSQL over TLS on this machine: a front with a certificate for
    ``LOCAL_HOST_NAME`` and the throwaway CA it is of."""

    authority: ThrowawayCa
    front: TlsFront

    def url(self, dsn: str) -> str:
        """``dsn`` through the front, verified (``verify-full``) against the CA."""
        return self.front.url(
            dsn, host=LOCAL_HOST_NAME, root_certificates=self.authority.certificate
        )


@contextmanager
def serving_tls(upstream_dsn: str, directory: Path) -> Iterator[LocalTls]:
    """A new CA under ``directory`` and a TLS front with a certificate of it in front of
    the server of ``upstream_dsn``, closed on exit."""
    authority = ThrowawayCa(directory)
    front = TlsFront(upstream_dsn, authority.issue(LOCAL_HOST_NAME))
    try:
        yield LocalTls(authority, front)
    finally:
        front.close()
