"""From an exception raised by a check to one of the failure reasons (ioc.model)."""

from __future__ import annotations

import ssl

import aiohttp

from collectors.probe.tls import CertificateFailure
from ioc.collector import CollectorFailure


def classify_http_error(exc: BaseException) -> CollectorFailure | None:
    """The CollectorFailure an aiohttp client exception stands for, or None if unknown."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        why = exc.os_error.strerror or str(exc.os_error)
        return CollectorFailure("dns", f"name did not resolve: {exc.host} ({why})")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cause = exc.certificate_error
        reason = getattr(cause, "verify_message", None) or cause
        port = exc.port or (443 if exc.ssl else 80)
        return CertificateFailure(f"certificate error: {reason}", exc.host, port, exc.host)
    if isinstance(exc, aiohttp.ClientSSLError):
        return CollectorFailure("tls", f"TLS handshake failed: {exc.os_error}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, TimeoutError):
            return CollectorFailure("connect_timeout", f"connect timed out: {exc}")
        return CollectorFailure("connect_refused", f"cannot connect: {exc.os_error}")
    if isinstance(exc, aiohttp.TooManyRedirects):
        hops = len(exc.history)
        return CollectorFailure("redirect_loop", f"gave up after {hops} redirects")
    if isinstance(exc, aiohttp.InvalidURL):
        return CollectorFailure("protocol_error", f"bad redirect target: {exc}")
    if isinstance(exc, ssl.SSLError):
        return CollectorFailure("tls", f"TLS handshake failed: {exc}")
    if isinstance(exc, aiohttp.ClientError | ConnectionError):
        text = str(exc) or type(exc).__name__
        return CollectorFailure("protocol_error", f"bad response: {text}"[:500])
    return None


def classify_os_error(exc: OSError) -> CollectorFailure:
    """For raw sockets (the tcp collector): refused, unreachable, reset, …"""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CollectorFailure("tls", f"certificate error: {exc.verify_message}")
    if isinstance(exc, ssl.SSLError):
        return CollectorFailure("tls", f"TLS error: {exc.reason or exc}")
    if isinstance(exc, TimeoutError):
        return CollectorFailure("connect_timeout", f"connect timed out: {exc}")
    return CollectorFailure("connect_refused", f"cannot connect: {exc.strerror or exc}")
