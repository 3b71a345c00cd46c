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

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography import x509

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
