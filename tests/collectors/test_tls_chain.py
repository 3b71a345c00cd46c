"""The reported certificate expiry is the earliest of the chain, as blackbox_exporter's.

A real local HTTPS server sends a leaf and the intermediate that signed it; the probe trusts
the root. Each certificate is made here with its own expiry, so the tests see which one the
probe reported: with verification on, the verified chain (root included, though the server
does not send it); with verification off, what the server sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.collectors.probe_support import ProbeHarness, labels, serve

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
EXPIRY = "ioc_probe_tls_cert_expiry_timestamp_seconds"


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def expires(self) -> float:
        return self.cert.not_valid_after_utc.timestamp()


def issue(name: str, days: int, issuer: Issued | None = None, *, ca: bool) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "So TTTT Hau Giang"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW - dt.timedelta(days=1))
               .not_valid_after(NOW + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = (builder
                   .add_extension(x509.SubjectAlternativeName(names), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                  critical=False))
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False)
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


@dataclass
class Chain:
    root: Issued
    intermediate: Issued
    leaf: Issued
    ca_file: str
    server: ssl.SSLContext


def make_chain(tmp_path: Path, *, root_days: int, intermediate_days: int,
               leaf_days: int) -> Chain:
    root = issue("Hau Giang test root", root_days, ca=True)
    intermediate = issue("Hau Giang test intermediate", intermediate_days, root, ca=True)
    leaf = issue("localhost", leaf_days, intermediate, ca=False)
    ca_file = tmp_path / "root.pem"
    ca_file.write_bytes(root.pem)
    served = tmp_path / "served.pem"  # what the server sends: leaf, then intermediate
    served.write_bytes(leaf.pem + intermediate.pem)
    key = tmp_path / "leaf.key"
    key.write_bytes(leaf.key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(str(served), str(key))
    return Chain(root, intermediate, leaf, str(ca_file), server)


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def https_url(aiohttp_server, chain: Chain) -> str:  # type: ignore[no-untyped-def]
    return (await serve(aiohttp_server, ok, ssl=chain.server)).replace("http://", "https://")


@pytest.fixture
def intermediate_first(tmp_path: Path) -> Chain:
    return make_chain(tmp_path, root_days=3650, intermediate_days=30, leaf_days=90)


async def test_expiry_is_the_intermediates_when_it_expires_before_the_leaf(
        probe: ProbeHarness, aiohttp_server, intermediate_first: Chain) -> None:
    chain = intermediate_first
    url = await https_url(aiohttp_server, chain)
    outcome = await probe.runner({"type": "http", "url": url, "ca_file": chain.ca_file}).poll()
    assert outcome.result.up, outcome.result.error
    assert probe.value(EXPIRY, labels()) == chain.intermediate.expires
    assert chain.intermediate.expires < chain.leaf.expires


async def test_cert_min_days_looks_at_the_whole_chain(
        probe: ProbeHarness, aiohttp_server, intermediate_first: Chain) -> None:
    chain = intermediate_first
    url = await https_url(aiohttp_server, chain)
    block = {"type": "http", "url": url, "ca_file": chain.ca_file}
    soon = await probe.runner({**block, "name": "a", "cert_min_days": 45}).poll()
    fine = await probe.runner({**block, "name": "b", "cert_min_days": 20}).poll()
    assert soon.result.reason == "tls"
    assert "CN=Hau Giang test intermediate" in (soon.result.error or "")
    assert fine.result.up, fine.result.error


async def test_verified_chain_includes_the_trusted_root_the_server_did_not_send(
        probe: ProbeHarness, aiohttp_server, tmp_path: Path) -> None:
    chain = make_chain(tmp_path, root_days=20, intermediate_days=30, leaf_days=90)
    url = await https_url(aiohttp_server, chain)
    verified = await probe.runner({"type": "http", "url": url, "name": "verified",
                                   "ca_file": chain.ca_file}).poll()
    unverified = await probe.runner({"type": "http", "url": url, "name": "unverified",
                                     "verify_tls": False}).poll()
    assert verified.result.up and unverified.result.up
    assert probe.value(EXPIRY, labels(name="verified")) == chain.root.expires
    # Without verification only what the server sent is known: the leaf and intermediate.
    assert probe.value(EXPIRY, labels(name="unverified")) == chain.intermediate.expires


async def test_tcp_tls_reports_the_chains_earliest_expiry(
        probe: ProbeHarness, intermediate_first: Chain) -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mail.haugiang.gov.vn ESMTP\r\n")
        await writer.drain()
        writer.close()

    chain = intermediate_first
    server = await asyncio.start_server(greet, "127.0.0.1", 0, ssl=chain.server)
    try:
        port = server.sockets[0].getsockname()[1]
        outcome = await probe.runner({"type": "tcp", "host": "127.0.0.1", "port": port,
                                      "tls": True, "server_name": "localhost",
                                      "expect": "^220 ", "ca_file": chain.ca_file}).poll()
    finally:
        server.close()
        await server.wait_closed()
    assert outcome.result.up, outcome.result.error
    assert probe.value(EXPIRY, labels("tcp")) == chain.intermediate.expires
