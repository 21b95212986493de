"""The TypeScript side of the contract: openapi-typescript types from the served document accept an integrator's
typed script and reject its wrong kind and wrong vault-out reason (``@ts-expect-error`` lines)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.once  # installs into one shared folder: the SQLite pass only, never both passes at once
HERE = Path(__file__).parent / "typescript"


def _run(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_generated_types_check_the_typed_walk_through(client: Any, tmp_path: Path) -> None:
    npm = shutil.which("npm")
    assert npm is not None, "node and npm are needed (scripts/test.sh installs them)"
    if not (HERE / "node_modules" / ".bin" / "tsc").exists():
        done = _run(npm, "ci", "--no-audit", "--no-fund", cwd=HERE)
        assert done.returncode == 0, done.stdout + done.stderr
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(client.get("/api/v2/openapi.json").json()))
    shutil.copy(HERE / "walkthrough.ts", tmp_path / "walkthrough.ts")
    bin_dir = HERE / "node_modules" / ".bin"
    made = _run(str(bin_dir / "openapi-typescript"), str(spec), "-o", str(tmp_path / "schema.d.ts"), cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    checked = _run(
        str(bin_dir / "tsc"),
        "--noEmit",
        "--strict",
        "--target",
        "es2020",
        "--moduleResolution",
        "node",
        "walkthrough.ts",
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
