"""What the ``http`` probe hands to ``ioc try``'s trace (ioc.trace), kept out of its engine.

The engine (``wire.py``, or aiohttp for keepalive and proxy targets) calls :func:`note_http`
once per exchange with what it already holds; the collector calls :func:`note_content` with
the decoded page it already judged. Both return at once when no trace is active, which is
every scheduled poll.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from cryptography import x509

from collectors.probe.conditions import ContentRules, Keywords
from collectors.probe.tls import peer_chain
from ioc import trace

Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def note_http(url: str, status: int, headers: Headers, ssl_object: Any = None,
              method: str = "GET", sent: Headers = ()) -> None:
    """One request (``method`` and the ``sent`` headers) and its answer (a redirect hop or
    the final one), and its TLS chain."""
    tracer = trace.active()
    if tracer is None:
        return
    tracer.exchange(url, status, _pairs(headers), method, _pairs(sent))
    if ssl_object is not None:
        tracer.tls = tls_trace(ssl_object)


def _pairs(headers: Headers) -> Iterable[tuple[str, str]]:
    return headers.items() if isinstance(headers, Mapping) else headers


def tls_trace(ssl_object: Any) -> trace.TlsTrace:
    """The chain the expiry is taken from (collectors.probe.tls), each certificate named."""
    chain: list[trace.Certificate] = []
    for der in peer_chain(ssl_object):
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            continue
        chain.append(trace.Certificate(subject=cert.subject.rfc4514_string(),
                                       issuer=cert.issuer.rfc4514_string(),
                                       not_after=cert.not_valid_after_utc.timestamp()))
    earliest = min((c.not_after for c in chain), default=None)
    return trace.TlsTrace(version=ssl_object.version() or "unknown", chain=chain,
                          earliest_not_after=earliest)


def note_content(rules: ContentRules, text: str, forbidden: Keywords | None,
                 hits: Iterable[str], title_problem: str | None) -> None:
    """Each content condition on its own with why it held or not.

    Every condition is judged by ``ContentRules.check`` itself, given that one condition
    alone, so the trace cannot disagree with the verdict of a scheduled poll.
    """
    tracer = trace.active()
    if tracer is None:
        return
    empty = ContentRules(case_insensitive=rules.case_insensitive)
    single: list[tuple[str, ContentRules]] = []
    single += [(f"body contains {n!r}", replace(empty, contains=(n,))) for n in rules.contains]
    single += [(f"body does not contain {n!r}", replace(empty, not_contains=(n,)))
               for n in rules.not_contains]
    if rules.regex is not None:
        single.append((f"body matches {rules.regex.pattern!r}", replace(empty, regex=rules.regex)))
    if rules.expected_title is not None:
        single.append((f"title contains {rules.expected_title!r}",
                       replace(empty, expected_title=rules.expected_title)))
    if rules.json_query is not None:
        single.append((f"json_condition {rules.json_source!r}",
                       replace(empty, json_query=rules.json_query,
                               json_source=rules.json_source)))
    for name, rule in single:
        problem = rule.check(text)
        tracer.checks.append(trace.Check(name, problem is None, problem or "met"))
    if forbidden is not None:
        found = list(hits)
        tracer.checks.append(trace.Check(
            "forbidden keywords", not found,
            f"found: {', '.join(found)}" if found else "none found"))
    if title_problem is not None:
        tracer.checks.append(trace.Check("page title unchanged", False, title_problem))
