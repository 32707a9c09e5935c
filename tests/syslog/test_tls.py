"""Syslog over TLS (RFC 5425) against the real server: rsyslog's omfwd with the gtls driver presenting a
client certificate, Python's ssl with and without one. Certificates are made here (a CA, the server's for
127.0.0.1, a client's), with `cryptography` (installed with moto, a test dependency)."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.serverproc import free_port
from tests.support import DB
from tests.syslog.conftest import Rsyslog, SyslogServer, start_syslog, stored, wait_for_rows


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(
    directory: Path,
    stem: str,
    common: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(issuer[0].subject if issuer else _name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(common), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    certificate = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (directory / f"{stem}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / f"{stem}-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return certificate, key


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    directory = tmp_path / "certs"
    directory.mkdir()
    ca = _certificate(directory, "ca", "test syslog CA", None)
    _certificate(directory, "server", "localhost", ca)
    _certificate(directory, "client", "client.example", ca)
    return directory


@pytest.fixture
def tls_server(
    db: DB, database_url: str, tmp_path: Path, certificates: Path
) -> Iterator[tuple[SyslogServer, int]]:
    port = free_port()
    server = start_syslog(
        database_url,
        tmp_path / "server",
        SYSLOG_TLS_PORT=str(port),
        SYSLOG_TLS_CERT=str(certificates / "server.pem"),
        SYSLOG_TLS_KEY=str(certificates / "server-key.pem"),
        SYSLOG_TLS_CA=str(certificates / "ca.pem"),
    )
    yield server, port
    server.stop()


def _client(certificates: Path, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certificates / "ca.pem")
    if with_certificate:
        context.load_cert_chain(certificates / "client.pem", certificates / "client-key.pem")
    return context


def test_a_client_certificate_signed_by_the_ca_is_let_in(
    tls_server: tuple[SyslogServer, int], certificates: Path, db: DB
) -> None:
    message = b"<10>1 2026-12-06T10:00:00Z gw vpn - LOGIN - tunnel up"
    with (
        socket.create_connection(("127.0.0.1", tls_server[1])) as raw,
        _client(certificates, True).wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(b"%d %s" % (len(message), message))
    assert wait_for_rows(db, 1) == 1
    (row,) = stored(db)
    assert (row["service"], row["level"], row["message"], row["metadata"]["msgid"]) == (
        "vpn", "FATAL", "tunnel up", "LOGIN",
    )  # fmt: skip
    assert tls_server[0].metric("logsave_syslog_stored_total", transport="tls") == 1


def test_without_a_client_certificate_nothing_is_stored(
    tls_server: tuple[SyslogServer, int], certificates: Path, db: DB
) -> None:
    answer = b"?"
    try:
        with (
            socket.create_connection(("127.0.0.1", tls_server[1]), timeout=30) as raw,
            _client(certificates, False).wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            sock.sendall(b"11 <13>app: no")
            answer = sock.recv(10)  # TLS 1.3: the refusal comes after the client's handshake is done
    except (ssl.SSLError, OSError):
        answer = b""
    assert answer == b""
    assert tls_server[0].metric("logsave_syslog_received_total", transport="tls") == 0
    assert db.count() == 0


def test_rsyslog_omfwd_gtls(
    tls_server: tuple[SyslogServer, int], certificates: Path, db: DB, tmp_path: Path
) -> None:
    rsyslog = Rsyslog(
        tmp_path,
        f'global(DefaultNetstreamDriverCAFile="{certificates / "ca.pem"}" '
        f'DefaultNetstreamDriverCertFile="{certificates / "client.pem"}" '
        f'DefaultNetstreamDriverKeyFile="{certificates / "client-key.pem"}")\n'
        f'action(type="omfwd" target="127.0.0.1" port="{tls_server[1]}" protocol="tcp" StreamDriver="gtls" '
        'StreamDriverMode="1" StreamDriverAuthMode="x509/name" StreamDriverPermittedPeers="localhost" '
        'TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")\n',
    )
    run = uuid.uuid4().hex[:8]
    lines = [f"{run} door {i} opened" for i in range(100)]
    try:
        rsyslog.write(lines)
        assert wait_for_rows(db, len(lines)) == len(lines), rsyslog.log()
    finally:
        rsyslog.stop()
    assert sorted(row["message"] for row in stored(db)) == sorted(lines)
