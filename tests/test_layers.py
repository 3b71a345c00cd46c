"""The layers of the house hold: import-linter's contracts in pyproject.toml (service above
web, web above alerts and collectors, those above the core ioc; web never imports a
collector; no import cycle within any package). `make lint` runs the same check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_import_contract_is_kept() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_the_core_and_the_web_layer_name_no_part_of_the_root() -> None:
    """A plain reading of the sources, beside the contracts: no module below the root
    mentions ``service.`` in an import line (nor the app the root builds)."""
    offenders = []
    for package in ("ioc", "collectors", "alerts", "web"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "ioc" / "__main__.py":
                continue  # python -m ioc hands over to service.cli: the one way up
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                text = line.strip()
                if text.startswith(("import service", "from service")) or "IocApp" in text:
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {text}")
    assert offenders == []
