"""What a probe reports about a TLS connection: the chain's earliest expiry and the version.

A site breaks the day *any* certificate of its chain expires, and intermediates often expire
before the leaf, so, like blackbox_exporter's ``probe_ssl_earliest_cert_expiry``, the reported
expiry is the earliest ``notAfter`` in the chain:

- with verification on, the chain OpenSSL verified: the leaf, the intermediates it used and
  the trusted root it ended at (whether or not the server sent that root);
- with ``verify_tls: false``, every certificate the server sent, as sent.

Python exposes both chains publicly from 3.13 (``SSLObject.get_verified_chain()`` and
``get_unverified_chain()``); on 3.10–3.12 the same two methods exist on the C-level object
behind every ``SSLObject`` (``_sslobj``), returning certificate objects that export DER. Where
neither is there, the leaf alone is reported, which is what ``getpeercert`` gives.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import ip_address
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning

from ioc.collector import CollectorFailure

_DER = 2  # _ssl.ENCODING_DER: the argument of _ssl.Certificate.public_bytes
# Parsing a certificate costs ~20 us and a probe sees the same two or three every time (and
# targets share intermediates and roots): the expiry of the most recent ones is remembered,
# keyed by their DER bytes (about 1 KiB each, so at most ~8 MiB).
CERT_CACHE_SIZE = 8192


@dataclass(frozen=True, slots=True)
class TlsInfo:
    version: str          # "TLSv1.3"
    not_after: float      # unix seconds when the first certificate of the chain expires
    subject: str          # that certificate's subject


def _chain_der(ssl_object: Any, which: str) -> list[bytes]:
    """DER certificates of ``which`` chain (``get_verified_chain``/``get_unverified_chain``)."""
    public = getattr(ssl_object, which, None)  # Python 3.13+: a list of DER bytes
    if public is not None:
        return [bytes(der) for der in public() or ()]
    inner = getattr(getattr(ssl_object, "_sslobj", None), which, None)  # Python 3.10-3.12
    if inner is None:
        return []
    return [cert.public_bytes(_DER) for cert in inner() or ()]


def peer_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
    """The chain the expiry is taken from (see the module's docstring), leaf first."""
    verified = ssl_object.context.verify_mode != ssl.CERT_NONE
    chain = _chain_der(ssl_object, "get_verified_chain") if verified else []
    if not chain:
        chain = _chain_der(ssl_object, "get_unverified_chain")
    if not chain:
        leaf = ssl_object.getpeercert(binary_form=True)
        chain = [leaf] if leaf else []
    return chain


@lru_cache(maxsize=CERT_CACHE_SIZE)
def _expiry(der: bytes) -> tuple[float, str]:
    cert = x509.load_der_x509_certificate(der)
    return cert.not_valid_after_utc.timestamp(), cert.subject.rfc4514_string()


def earliest_expiry(chain: Sequence[bytes]) -> tuple[float, str]:
    """``(not_after, subject)`` of the certificate that expires first."""
    return min(_expiry(der) for der in chain)


def tls_info(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> TlsInfo | None:
    """Read from the binary certificates, so it also works when verification is off."""
    if ssl_object is None:
        return None
    chain = peer_chain(ssl_object)
    if not chain:
        return None
    not_after, subject = earliest_expiry(chain)
    return TlsInfo(version=ssl_object.version() or "unknown", not_after=not_after,
                   subject=subject)


def check_cert_days(info: TlsInfo | None, min_days: float | None, now: float) -> None:
    """Fail with reason ``tls`` when a certificate of the chain expires in under ``min_days``."""
    if min_days is None or info is None:
        return
    left = (info.not_after - now) / 86400
    if left < min_days:
        raise CollectorFailure(
            "tls", f"certificate of {info.subject} expires in {left:.1f} days "
                   f"(cert_min_days {min_days:g})")


@lru_cache(maxsize=64)
def shared_client_context(verify: bool, ca_file: str | None = None) -> ssl.SSLContext:
    """One context per (verify, ca_file) for all targets: each context holds its own copy of
    the system's trusted CAs (about 1 MB and a few ms to load), so 10,000 targets must not
    build 10,000 of them. A context is safe to share; every check still does a full handshake
    because no session is passed for resumption."""
    return client_context(verify, ca_file)


def client_context(verify: bool, ca_file: str | None = None) -> ssl.SSLContext:
    """A client context; ``verify=False`` still encrypts but checks neither chain nor name.

    ``ca_file`` adds a PEM bundle of trusted CAs (a province's internal CA) to the system's.
    """
    context = ssl.create_default_context()
    if verify and ca_file:
        context.load_verify_locations(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# -- telling certificate failures apart ---------------------------------------------------------
#
# OpenSSL stops at the first problem it meets and reports that one ("certificate has expired"
# for a self-signed, expired certificate, say). An operator needs all of them: an expired
# certificate is renewed, an untrusted one is replaced or its CA added to ``ca_file``, a name
# mismatch is a wrong certificate or a wrong URL. After a failed verified handshake the
# check takes the chain the server sends over a second, unverified handshake and examines it
# here, each property on its own. Building the path is written by hand over
# ``cryptography`` (``verify_directly_issued_by``) because its full verifier
# (``x509.verification``) reports one error too, and checks time and name with the path.

CAUSE_ORDER = ("expired", "not yet valid", "hostname mismatch", "self-signed",
               "untrusted issuer")


@lru_cache(maxsize=16)
def trusted_roots(ca_file: str | None) -> dict[bytes, tuple[x509.Certificate, ...]]:
    """The CAs a verified check trusts (the system's and ``ca_file``), by subject (DER)."""
    roots: dict[bytes, list[x509.Certificate]] = {}
    with warnings.catch_warnings():  # a few system roots predate RFC 5280's serial rules
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        for der in shared_client_context(True, ca_file).get_ca_certs(binary_form=True):
            cert = x509.load_der_x509_certificate(der)
            roots.setdefault(cert.subject.public_bytes(), []).append(cert)
    return {subject: tuple(certs) for subject, certs in roots.items()}


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _trust_problem(chain: Sequence[x509.Certificate],
                   roots: dict[bytes, tuple[x509.Certificate, ...]]) -> str | None:
    """None when a path from the leaf reaches a trusted CA (validity dates aside)."""
    current = chain[0]
    pool = list(chain[1:])
    for _ in range(len(chain) + 8):
        for root in roots.get(current.issuer.public_bytes(), ()):
            if _issued_by(current, root):
                return None
        if current.public_bytes(serialization.Encoding.DER) in {
                r.public_bytes(serialization.Encoding.DER)
                for r in roots.get(current.subject.public_bytes(), ())}:
            return None
        parent = next((c for c in pool if _issued_by(current, c)), None)
        if parent is None:
            break
        pool.remove(parent)
        current = parent
    if len(chain) == 1 and _issued_by(chain[0], chain[0]):
        return f"self-signed ({chain[0].subject.rfc4514_string()})"
    if _issued_by(current, current):
        return f"self-signed ({current.subject.rfc4514_string()})" if current is chain[0] \
            else f"untrusted issuer (root {current.subject.rfc4514_string()} is not trusted)"
    return f"untrusted issuer ({current.issuer.rfc4514_string()} is not a trusted CA " \
           "and was not sent)"


def _names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        common = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return [str(a.value) for a in common], []
    return san.get_values_for_type(x509.DNSName), \
        [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def _host_matches(host: str, dns_names: Sequence[str], ips: Sequence[str]) -> bool:
    """RFC 6125 as browsers apply it: exact names, or a wildcard for the left-most label."""
    try:
        return ip_address(host.strip("[]")).compressed in {
            ip_address(ip).compressed for ip in ips}
    except ValueError:
        pass
    wanted = host.rstrip(".").lower()
    for name in dns_names:
        name = name.rstrip(".").lower()
        if name == wanted:
            return True
        if name.startswith("*.") and "." in wanted:
            label, rest = wanted.split(".", 1)
            if label and rest == name[2:]:
                return True
    return False


def _when(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def certificate_causes(chain_der: Sequence[bytes], host: str, now: float,
                       ca_file: str | None = None) -> list[str]:
    """Every problem of the chain a server sent, for ``host`` at ``now``, in CAUSE_ORDER.

    Each cause is one short clause naming the certificate, e.g. ``expired (CN=x on
    2024-01-01 00:00 UTC)``; empty when none is found (the verifier objected to something
    else, and its own message is kept).
    """
    if not chain_der:
        return []
    chain = [x509.load_der_x509_certificate(der) for der in chain_der]
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    causes: list[str] = []
    expired = [c for c in chain if c.not_valid_after_utc < moment]
    if expired:
        causes.append("expired (" + ", ".join(
            f"{c.subject.rfc4514_string()} on {_when(c.not_valid_after_utc)}"
            for c in expired) + ")")
    early = [c for c in chain if c.not_valid_before_utc > moment]
    if early:
        causes.append("not yet valid (" + ", ".join(
            f"{c.subject.rfc4514_string()} from {_when(c.not_valid_before_utc)}"
            for c in early) + ")")
    dns_names, ips = _names(chain[0])
    if not _host_matches(host, dns_names, ips):
        shown = ", ".join([*(f"DNS:{n}" for n in dns_names), *(f"IP:{ip}" for ip in ips)]
                          [:5]) or "no names"
        causes.append(f"hostname mismatch ({host} is not in {shown})")
    trust = _trust_problem(chain, trusted_roots(ca_file))
    if trust is not None:
        causes.append(trust)
    return causes


async def unverified_chain(host: str, port: int, server_name: str,
                           family: int = 0) -> list[bytes]:
    """The chain ``host`` sends, over a handshake that verifies nothing (for diagnosis)."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(
        asyncio.Protocol, host, port, family=family, ssl=shared_client_context(False),
        server_hostname=server_name)
    try:
        ssl_object = transport.get_extra_info("ssl_object")
        return _chain_der(ssl_object, "get_unverified_chain") if ssl_object else []
    finally:
        transport.abort()


class CertificateFailure(CollectorFailure):
    """A failed verification, with what is needed to tell its causes apart later."""

    def __init__(self, message: str, host: str, port: int, server_name: str,
                 family: int = 0) -> None:
        super().__init__("tls", message)
        self.host, self.port, self.server_name, self.family = host, port, server_name, family


async def explain_certificate_failure(failure: CertificateFailure, now: float,
                                      ca_file: str | None) -> CollectorFailure:
    """``failure`` with every cause the chain has (or as it was when they cannot be found)."""
    try:
        chain = await unverified_chain(failure.host, failure.port, failure.server_name,
                                       failure.family)
        causes = certificate_causes(chain, failure.server_name, now, ca_file)
    except (OSError, ValueError):
        causes = []
    if not causes:
        return CollectorFailure("tls", str(failure))
    return CollectorFailure("tls", "certificate error: " + "; ".join(causes))
