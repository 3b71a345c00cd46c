"""Who may read ``/metrics``: anyone, or a scraper with the configured bearer token or
basic-auth pair (``metrics:`` in config.yaml).

Secrets are kept only as SHA-256 digests and a presented credential is hashed and compared
with :func:`hmac.compare_digest`, user name and password both, every time, so the response
time says nothing about how much of a guess was right.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from ioc.metrics_config import MetricsConfig


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def _basic_pair(encoded: str) -> tuple[str, str] | None:
    """``user:password`` from a basic-auth header value; None when it is not one."""
    try:
        decoded = base64.b64decode(encoded.strip().encode("ascii"), validate=True)
        user, sep, password = decoded.decode("utf-8").partition(":")
    except ValueError:  # not ASCII, not base64 or not UTF-8
        return None
    return (user, password) if sep else None


class MetricsGuard:
    def __init__(self, config: MetricsConfig) -> None:
        self._token = (_digest(config.bearer_token.get_secret_value())
                       if config.bearer_token is not None else None)
        basic = config.basic_auth
        self._basic = ((_digest(basic.username), _digest(basic.password.get_secret_value()))
                       if basic is not None else None)

    @property
    def open(self) -> bool:
        return self._token is None and self._basic is None

    @property
    def challenge(self) -> str:
        """The WWW-Authenticate value of a 401: the schemes this guard accepts."""
        schemes = []
        if self._basic is not None:
            schemes.append('Basic realm="ioc metrics", charset="UTF-8"')
        if self._token is not None:
            schemes.append('Bearer realm="ioc metrics"')
        return ", ".join(schemes)

    def allows(self, authorization: str | None) -> bool:
        """Whether a request with this Authorization header may read the metrics."""
        if self.open:
            return True
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self._token is not None:
            return hmac.compare_digest(_digest(value.strip()), self._token)
        if scheme == "basic" and self._basic is not None:
            pair = _basic_pair(value)
            if pair is None:
                return False
            user_ok = hmac.compare_digest(_digest(pair[0]), self._basic[0])
            password_ok = hmac.compare_digest(_digest(pair[1]), self._basic[1])
            return user_ok & password_ok
        return False
