"""The layering in setup.cfg holds: imports point down, planning/decoding stay pure."""

import shutil
import subprocess
import sys
from pathlib import Path


def test_import_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    r = subprocess.run([exe], cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 kept, 0 broken" in r.stdout


PACKAGE = Path(__file__).parents[1] / "zv_dask"
WINGS = {"format", "io", "plan", "read", "collections", "api", "stats", "write", "cli", "xarray",
         "ingest", "neighbours"}


def test_the_package_is_wings_with_a_small_public_face():
    """``ls zv_dask`` shows the wings; at most 8 modules stay at the top."""
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders == WINGS


def test_every_wing_says_its_job_and_no_module_is_long():
    import ast

    for wing in WINGS:
        doc = ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text()))
        assert doc and len(doc.split()) >= 6, wing
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long
