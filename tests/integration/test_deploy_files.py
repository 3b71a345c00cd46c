"""The deployment files parse with the tools that will run them: `systemd-analyze verify` for
the unit, `nginx -t` for the reverse proxy (with a throwaway certificate), and the proxy runs
for real in front of a running ioc: the client's address and scheme reach ioc, and the
sign-in rate limit holds."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme

from service.app import IocApp
from tests.conftest import demo_config, free_port, require_binary

DEPLOY = Path(__file__).parents[2] / "deploy"


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze", "systemd")
    unit = (DEPLOY / "systemd" / "ioc.service").read_text(encoding="utf-8")
    assert "User=ioc" in unit and "Restart=on-failure" in unit
    for option in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/ioc",
                   "PrivateTmp=yes", "CapabilityBoundingSet="):
        assert option in unit, option
    # verify checks that the executables exist; the venv is not installed here
    (tmp_path / "ioc.service").write_text(unit.replace("/opt/ioc/bin/ioc", "/bin/true"),
                                          encoding="utf-8")
    result = subprocess.run([analyze, "verify", str(tmp_path / "ioc.service")],
                            capture_output=True, text=True, timeout=60, check=False)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "ioc.service" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def _nginx_site(tmp_path: Path, ca: trustme.CA, *, upstream: int | None = None,
                https: int | None = None, http: int | None = None) -> str:
    """deploy/nginx/ioc.conf with a throwaway certificate, optionally on free local ports."""
    cert = ca.issue_cert("ioc.haugiang.gov.vn")
    cert.private_key_pem.write_to_path(str(tmp_path / "privkey.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "fullchain.pem"))
    site = (DEPLOY / "nginx" / "ioc.conf").read_text(encoding="utf-8")
    site = site.replace("/etc/ssl/ioc", str(tmp_path))
    if upstream is not None:
        site = site.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream};")
        for ipv6 in ("    listen [::]:80;\n", "    listen [::]:443 ssl http2;\n"):
            site = site.replace(ipv6, "")
        site = site.replace("listen 80;", f"listen 127.0.0.1:{http};")
        site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;")
    (tmp_path / "ioc.conf").write_text(site, encoding="utf-8")
    (tmp_path / "nginx.conf").write_text(f"""
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
daemon off;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    include {tmp_path}/ioc.conf;
}}
""", encoding="utf-8")
    return site


def test_nginx_config_is_accepted(tmp_path: Path) -> None:
    nginx = require_binary("nginx")
    site = _nginx_site(tmp_path, trustme.CA())
    assert "proxy_buffering off;" in site and "location = /api/v1/stream" in site
    for directive in ("limit_conn ioc_conn", "zone=ioc_api", "zone=ioc_login",
                      "X-Forwarded-For $proxy_add_x_forwarded_for",
                      "X-Forwarded-Proto $scheme", "client_header_timeout"):
        assert directive in site, directive
    result = subprocess.run([nginx, "-t", "-q", "-e", str(tmp_path / "error.log"),
                             "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


VIEWER = "viewer-token-0123456789"
OPERATOR = "operator-token-0123456789"
ADMIN = "admin-token-0123456789"


@pytest.fixture
async def behind_nginx(tmp_path: Path) -> AsyncIterator[tuple[IocApp, str, ssl.SSLContext]]:
    """ioc trusting only the proxy on 127.0.0.1, and nginx with the shipped site before it."""
    nginx = require_binary("nginx")
    app = IocApp(demo_config(tmp_path, free_port(), codes=["STP"], interval="5s", extra={
        "service": {"listen": "127.0.0.1:0", "trusted_proxies": ["127.0.0.1/32"]},
        "auth": {"tokens": [
            {"name": "tv", "token": VIEWER, "roles": ["viewer"]},
            {"name": "ca-truc", "token": OPERATOR, "roles": ["operator"]},
            {"name": "admin-desk", "token": ADMIN, "roles": ["admin"]}]}}))
    await app.start()
    ca = trustme.CA()
    https = free_port()
    _nginx_site(tmp_path, ca, upstream=app.bound_port, https=https, http=free_port())
    proc = await asyncio.create_subprocess_exec(
        nginx, "-e", str(tmp_path / "error.log"), "-p", str(tmp_path),
        "-c", str(tmp_path / "nginx.conf"))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    base = f"https://ioc.haugiang.gov.vn:{https}"
    try:
        async with asyncio.timeout(10):
            while True:  # nginx says nothing when it is ready: wait for its port to answer
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", https)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        yield app, base, context
    finally:
        proc.terminate()
        await proc.wait()
        await app.stop(grace=1.0)


def _client(context: ssl.SSLContext, source: str) -> aiohttp.ClientSession:
    """A client from ``source`` that resolves ioc's name to the local nginx."""
    resolver = _LocalResolver()
    connector = aiohttp.TCPConnector(ssl=context, local_addr=(source, 0), resolver=resolver)
    return aiohttp.ClientSession(connector=connector,
                                 cookie_jar=aiohttp.CookieJar(unsafe=True))


class _LocalResolver(aiohttp.abc.AbstractResolver):
    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[dict[str, object]]:
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": 2,
                 "proto": 0, "flags": 0}]

    async def close(self) -> None:
        return None


async def test_behind_nginx_ioc_sees_the_client_and_its_scheme(behind_nginx) -> None:
    app, base, context = behind_nginx
    async with _client(context, "127.0.0.2") as session:
        async with session.get(f"{base}/?token={VIEWER}", allow_redirects=False) as resp:
            assert resp.status == 303
            assert "Secure" in resp.headers["Set-Cookie"]  # the browser spoke https
        async with session.post(f"{base}/api/v1/announcement", json={"text": "Bảo trì"},
                                headers={"Authorization": f"Bearer {OPERATOR}",
                                         "X-Forwarded-For": "203.0.113.9"}) as resp:
            assert resp.status == 200  # the forged hop on the left is not believed
        async with session.get(f"{base}/api/v1/audit",
                               headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
            entries = (await resp.json())["entries"]
        assert [(e["actor"], e["client"]) for e in entries] == [("ca-truc", "127.0.0.2")]

        statuses = []
        for _ in range(10):
            async with session.post(f"{base}/console/login", data={"token": "wrong"},
                                    headers={"Sec-Fetch-Site": "same-origin"}) as resp:
                statuses.append(resp.status)
        assert 429 in statuses and statuses[0] == 401
    # nginx refused them, before ioc's own throttle (10 failures per address) had to
    assert app.registry.get_sample_value("ioc_auth_failures_total",
                                         {"reason": "throttled"}) == 0
