"""What a probe reports about a TLS connection: the certificate's expiry and the version."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from cryptography import x509

from collectors.base import CollectorFailure


@dataclass(frozen=True, slots=True)
class TlsInfo:
    version: str          # "TLSv1.3"
    not_after: float      # unix seconds when the server's certificate expires
    subject: str


def tls_info(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> TlsInfo | None:
    """Read from the binary certificate, so it also works when verification is off."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    return TlsInfo(version=ssl_object.version() or "unknown",
                   not_after=cert.not_valid_after_utc.timestamp(),
                   subject=cert.subject.rfc4514_string())


def check_cert_days(info: TlsInfo | None, min_days: float | None, now: float) -> None:
    """Fail with reason ``tls`` when the certificate expires in fewer than ``min_days``."""
    if min_days is None or info is None:
        return
    left = (info.not_after - now) / 86400
    if left < min_days:
        raise CollectorFailure(
            "tls", f"certificate of {info.subject} expires in {left:.1f} days "
                   f"(cert_min_days {min_days:g})")


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
