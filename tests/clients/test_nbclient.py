"""pytest wrapper: execute notebooks with nbclient through the server at $COMMONLAB_TEST_URL.

    COMMONLAB_TEST_URL=http://127.0.0.1:8888/ COMMONLAB_TEST_TOKEN=… .venv/bin/python -m pytest tests/clients

Skipped when COMMONLAB_TEST_URL is not set.
"""
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "nbclient_run.py"
FIXTURE = HERE / "fixtures" / "multicell.ipynb"

pytestmark = pytest.mark.skipif(
    not os.environ.get("COMMONLAB_TEST_URL") or "COMMONLAB_TEST_TOKEN" not in os.environ,
    reason="set COMMONLAB_TEST_URL and COMMONLAB_TEST_TOKEN to run against a server",
)


def run(notebook: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RUNNER), str(notebook), "--output", str(output), *extra],
        capture_output=True, text=True, timeout=300,
    )


def test_multicell_notebook_runs_and_matches_expectations(tmp_path):
    out = tmp_path / "multicell.executed.ipynb"
    proc = run(FIXTURE, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    nb = nbformat.read(out, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    assert any(o.output_type == "display_data" and "image/png" in o.data for c in code for o in c.outputs)


def test_wrong_expectation_is_reported(tmp_path):
    nb = nbformat.read(FIXTURE, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("commonlab_expect", {}).get("stdout") == "42\n")
    cell.metadata["commonlab_expect"]["stdout"] = "43\n"
    broken = tmp_path / "broken.ipynb"
    nbformat.write(nb, broken)
    proc = run(broken, tmp_path / "broken.executed.ipynb")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "expected '43\\n'" in proc.stderr


def test_raising_cell_fails_the_run(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                          nbformat.v4.new_code_cell("raise ValueError('boom')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "raises.ipynb"
    nbformat.write(nb, path)
    proc = run(path, tmp_path / "raises.executed.ipynb")
    assert proc.returncode == 1
    assert "ValueError" in proc.stderr


def test_wrong_token_fails_cleanly(tmp_path):
    proc = run(FIXTURE, tmp_path / "x.ipynb", "--token", "wrong-token")
    assert proc.returncode == 1
    assert "403" in proc.stderr
