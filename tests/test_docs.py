"""Every ```python block of README.md and of every page under docs/ runs as written.

A page's blocks run in order in one namespace (as a reader pasting them into one session
would), with an empty temporary folder as the working directory, so an example can only
use what it makes itself or what the package ships (``zv_dask.example_store``).  A block
that cannot run here (a cluster address, a private bucket) is fenced with another info
string, ``python-illustration``, and its page says why.  The docs site builds with
``mkdocs build --strict``, and the README's set-up commands are the ones CI runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
# an opening fence at the start of a line, its info string, the body, the closing fence
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.M | re.S)


def blocks(page: Path):
    """``(info, first line number, code)`` of every fenced block of a page, in order."""
    text = page.read_text(encoding="utf-8")
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start("body")) + 1
        indent = m.group("indent")
        body = "".join(l[len(indent):] if l.startswith(indent) else l
                       for l in m.group("body").splitlines(keepends=True))
        yield m.group("info").strip(), line, body


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def test_the_collector_finds_the_pages_and_their_blocks(tmp_path):
    names = {_rel(p) for p in PAGES}
    assert "README.md" in names and len(names) >= 13, names
    runnable = {_rel(p) for p in PAGES if any(i == "python" for i, _, _ in blocks(p))}
    assert "README.md" in runnable and len(runnable) >= 8, runnable
    # the regex sees a nested (indented) fence, and not a fence inside a block
    sample = "a\n\n  ```python\n  x = 1\n  ```\n\n```text\n```python\n```\n"
    (tmp_path / "sample.md").write_text(sample)
    got = list(blocks(tmp_path / "sample.md"))
    assert [(i, b) for i, _, b in got] == [("python", "x = 1\n"), ("text", "```python\n")]


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_python_blocks_run_as_written(page, tmp_path, monkeypatch):
    code = [(line, body) for info, line, body in blocks(page) if info == "python"]
    monkeypatch.chdir(tmp_path)
    assert not any(tmp_path.iterdir())
    namespace = {"__name__": "__docs__"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for line, body in code:
            # line numbers of tracebacks point into the page
            exec(compile("\n" * (line - 1) + body, f"{_rel(page)}", "exec"), namespace)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_illustrations_say_why(page):
    infos = {i.split()[0] if i else "" for i, _, _ in blocks(page)}
    assert infos <= {"", "python", "python-illustration", "bash", "text", "yaml", "toml"}, infos
    if "python-illustration" in infos:
        prose = FENCE.sub("", page.read_text(encoding="utf-8"))
        assert "illustration" in prose.lower(), f"{_rel(page)}: say why a block does not run"


def test_readme_setup_commands_are_what_ci_runs():
    first = next(b for i, _, b in blocks(ROOT / "README.md") if i == "bash")
    ci = (ROOT / ".ci" / "run").read_text()
    lines = [l for l in first.splitlines() if l.strip()]
    assert lines == [
        'python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]" && .venv/bin/zv-dask info && .venv/bin/zv-dask stats',
        ".venv/bin/python -m pytest -q",
    ]
    for l in lines:
        assert l in ci, l


def test_readme_is_short_and_links_every_page():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    for page in sorted((ROOT / "docs").rglob("*.md")):
        assert f"({_rel(page)})" in text or page.name == "index.md", f"README does not link {_rel(page)}"


def test_mkdocs_build_strict(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                        "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("open_zv", "to_zv", "example_store", "ZVStore", "describe", "histogram"):
        assert name in api, name
