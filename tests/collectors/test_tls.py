"""TLS checks against real local HTTPS and TLS servers with certificates made in the test."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ioc.status import build_status
from tests.collectors.probe_support import (
    ProbeHarness,
    labels,
    samples_of,
    serve,
)

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(organization_name="So TTTT Hau Giang test CA")


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: trustme.CA, *names: str, not_after: dt.datetime | None = None,
                   not_before: dt.datetime | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert = ca.issue_cert(*(names or ("localhost", "127.0.0.1")), not_after=not_after,
                         not_before=not_before)
    cert.configure_cert(context)
    return context


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def https_url(aiohttp_server, context: ssl.SSLContext) -> str:  # type: ignore[no-untyped-def]
    url = await serve(aiohttp_server, ok, ssl=context)
    return url.replace("http://", "https://")


async def test_valid_certificate_exports_expiry_version_and_tls_phase(
        probe: ProbeHarness, aiohttp_server, ca, ca_file) -> None:
    expires = (NOW + dt.timedelta(days=90)).replace(microsecond=0)
    url = await https_url(aiohttp_server, server_context(ca, not_after=expires))
    outcome = await probe.runner({"type": "http", "url": url, "ca_file": ca_file}).poll()
    assert outcome.result.up, outcome.result.error
    assert probe.value("ioc_probe_tls_cert_expiry_timestamp_seconds",
                       labels()) == expires.timestamp()
    (version,) = samples_of(outcome, "ioc_probe_tls_version_info")
    assert dict(version)["version"].startswith("TLSv1.")
    phases = {dict(k)["phase"] for k in samples_of(outcome, "ioc_probe_phase_duration_seconds")}
    assert {"connect", "tls", "processing", "transfer"} <= phases


async def test_untrusted_self_signed_certificate_is_tls(probe, aiohttp_server, ca) -> None:
    url = await https_url(aiohttp_server, server_context(ca))
    outcome = await probe.runner({"type": "http", "url": url}).poll()
    assert outcome.result.reason == "tls"
    assert "certificate" in (outcome.result.error or "")


async def test_verify_opt_out_accepts_it_and_still_reports_expiry(probe, aiohttp_server,
                                                                  ca) -> None:
    url = await https_url(aiohttp_server, server_context(ca))
    outcome = await probe.runner({"type": "http", "url": url, "verify_tls": False}).poll()
    assert outcome.result.up
    assert probe.value("ioc_probe_tls_cert_expiry_timestamp_seconds", labels()) > 0


async def test_expired_certificate_is_tls(probe, aiohttp_server, ca, ca_file) -> None:
    context = server_context(ca, not_before=NOW - dt.timedelta(days=30),
                             not_after=NOW - dt.timedelta(days=1))
    url = await https_url(aiohttp_server, context)
    outcome = await probe.runner({"type": "http", "url": url, "ca_file": ca_file}).poll()
    assert outcome.result.reason == "tls"
    assert "expired" in (outcome.result.error or "")


async def test_wrong_hostname_is_tls(probe, aiohttp_server, ca, ca_file) -> None:
    url = await https_url(aiohttp_server, server_context(ca, "dvc.haugiang.gov.vn"))
    outcome = await probe.runner({"type": "http", "url": url, "ca_file": ca_file}).poll()
    assert outcome.result.reason == "tls"
    assert "match" in (outcome.result.error or "").lower()


async def test_cert_min_days(probe, aiohttp_server, ca, ca_file) -> None:
    url = await https_url(aiohttp_server,
                          server_context(ca, not_after=NOW + dt.timedelta(days=5)))
    soon = await probe.runner({"type": "http", "url": url, "ca_file": ca_file, "name": "a",
                               "cert_min_days": 14}).poll()
    fine = await probe.runner({"type": "http", "url": url, "ca_file": ca_file, "name": "b",
                               "cert_min_days": 3}).poll()
    assert soon.result.reason == "tls" and "expires in" in soon.result.error
    assert fine.result.up


@pytest.fixture
async def tls_echo(ca: trustme.CA) -> AsyncIterator[int]:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mail.haugiang.gov.vn ESMTP\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0, ssl=server_context(ca))
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_tcp_with_tls(probe: ProbeHarness, tls_echo: int, ca_file: str) -> None:
    block = {"type": "tcp", "host": "127.0.0.1", "port": tls_echo, "tls": True,
             "expect": "^220 ", "server_name": "localhost"}
    good = await probe.runner({**block, "name": "a", "ca_file": ca_file}).poll()
    untrusted = await probe.runner({**block, "name": "b"}).poll()
    assert good.result.up, good.result.error
    assert probe.value("ioc_probe_tls_cert_expiry_timestamp_seconds", labels("tcp", "a")) > 0
    assert untrusted.result.reason == "tls"


# --------------------------------------------------------------------------------------------
# Every cause of a certificate failure is told, on both engines (wire and aiohttp).

ENGINES = {"wire": {}, "aiohttp": {"keepalive": True}}


def self_signed_context(name: str, *, not_after: dt.datetime) -> ssl.SSLContext:
    """A server certificate signed by its own key (no CA at all)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=60)).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address(name)) if name[0].isdigit()
                else x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        context.load_cert_chain(cert_path, key_path)
    return context


PAST = {"not_before": NOW - dt.timedelta(days=30), "not_after": NOW - dt.timedelta(days=1)}
FUTURE = {"not_before": NOW + dt.timedelta(days=2), "not_after": NOW + dt.timedelta(days=90)}
CASES: dict[str, tuple[Any, bool, list[str], list[str]]] = {
    # case: (server context from (ca, other_ca), trust ca_file?, causes named, causes not)
    "expired": (lambda ca, other: server_context(ca, **PAST), True,
                ["expired"], ["untrusted", "mismatch", "not yet valid"]),
    "not yet valid": (lambda ca, other: server_context(ca, **FUTURE), True,
                      ["not yet valid"], ["expired", "untrusted", "mismatch"]),
    "hostname mismatch": (lambda ca, other: server_context(ca, "dvc.haugiang.gov.vn"), True,
                          ["hostname mismatch (127.0.0.1 is not in DNS:dvc.haugiang.gov.vn)"],
                          ["expired", "untrusted"]),
    "untrusted issuer": (lambda ca, other: server_context(other), True,
                         ["untrusted issuer"], ["expired", "mismatch", "self-signed"]),
    "untrusted and expired": (lambda ca, other: server_context(other, **PAST), True,
                              ["expired", "untrusted issuer"], ["mismatch"]),
    "all three": (lambda ca, other: server_context(other, "dvc.haugiang.gov.vn", **PAST),
                  True, ["expired", "hostname mismatch", "untrusted issuer"], []),
    "self-signed": (lambda ca, other: self_signed_context(
        "127.0.0.1", not_after=NOW + dt.timedelta(days=30)), False,
        ["self-signed (CN=127.0.0.1)"], ["expired", "untrusted issuer", "mismatch"]),
    "self-signed and expired": (lambda ca, other: self_signed_context(
        "localhost", not_after=NOW - dt.timedelta(days=1)), False,
        ["expired (CN=localhost", "self-signed", "hostname mismatch"], []),
}


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("case", list(CASES))
async def test_every_cause_of_a_certificate_failure_is_named(
        probe: ProbeHarness, aiohttp_server, ca, ca_file, engine: str, case: str) -> None:
    make, trusted, named, absent = CASES[case]
    other = trustme.CA(organization_name="Unknown CA")
    url = await https_url(aiohttp_server, make(ca, other))
    block = {"type": "http", "url": url, **ENGINES[engine]}
    if trusted:
        block["ca_file"] = ca_file
    outcome = await probe.runner(block).poll()
    error = outcome.result.error or ""
    assert outcome.result.reason == "tls", error
    assert error.startswith("certificate error: "), error
    for cause in named:
        assert cause in error, error
    for cause in absent:
        assert cause not in error, error
    # The operator reads it in the status API (and the wall's tooltip, from the same dict).
    status = build_status(probe.board, {}, now=0.0, province={})
    assert status["targets"][0]["last_error"] == error


@pytest.mark.parametrize("engine", sorted(ENGINES))
async def test_a_failed_handshake_is_told_from_a_certificate_problem(
        probe: ProbeHarness, aiohttp_server, engine: str) -> None:
    """An https:// URL whose server speaks plain HTTP: no certificate at all."""
    url = await serve(aiohttp_server, ok)
    outcome = await probe.runner({"type": "http", "url": url.replace("http://", "https://"),
                                  **ENGINES[engine]}).poll()
    assert outcome.result.reason == "tls"
    assert "TLS handshake failed" in (outcome.result.error or "")
