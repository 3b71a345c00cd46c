"""The deployment files parse with the tools that will run them: `systemd-analyze verify` for
the unit, `nginx -t` for the reverse proxy (with a throwaway certificate)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import trustme

from tests.conftest import require_binary

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


def test_nginx_config_is_accepted(tmp_path: Path) -> None:
    nginx = require_binary("nginx")
    ca = trustme.CA()
    cert = ca.issue_cert("ioc.haugiang.gov.vn")
    cert.private_key_pem.write_to_path(str(tmp_path / "privkey.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "fullchain.pem"))
    site = (DEPLOY / "nginx" / "ioc.conf").read_text(encoding="utf-8")
    assert "proxy_buffering off;" in site and "location = /api/v1/stream" in site
    (tmp_path / "ioc.conf").write_text(site.replace("/etc/ssl/ioc", str(tmp_path)),
                                       encoding="utf-8")
    (tmp_path / "nginx.conf").write_text(f"""
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    include {tmp_path}/ioc.conf;
}}
""", encoding="utf-8")
    result = subprocess.run([nginx, "-t", "-q", "-e", str(tmp_path / "error.log"),
                             "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
