"""Syslog over TLS (RFC 5425): the TCP listener's connections (octet-counted frames; LF-terminated ones are
read too) inside TLS with SYSLOG_TLS_CERT and SYSLOG_TLS_KEY. With SYSLOG_TLS_CA a client must present a
certificate signed by it: the way to let only your own hosts in."""

from __future__ import annotations

import ssl

from app.config import Settings
from app.intake.writer import Writer
from app.syslog.tcp import StreamServer


def context(settings: Settings) -> ssl.SSLContext:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    assert settings.syslog_tls_cert is not None
    tls.load_cert_chain(settings.syslog_tls_cert, settings.syslog_tls_key)
    if settings.syslog_tls_ca is not None:
        tls.load_verify_locations(cafile=settings.syslog_tls_ca)
        tls.verify_mode = ssl.CERT_REQUIRED
    return tls


async def start(settings: Settings, writer: Writer, host: str) -> StreamServer:
    assert settings.syslog_tls_port is not None
    server = StreamServer(settings, writer, "tls", settings.syslog_tls_port)
    await server.start(host, context(settings))
    return server
