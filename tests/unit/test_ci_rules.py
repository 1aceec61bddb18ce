"""The suite's own rules, checked by running pytest on small test files with the project's
configuration (pyproject.toml) and hooks (tests/conftest.py): in CI a skipped, xfailed or
xpassed test fails the run; everywhere, an xfail that passes is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]

SAMPLES = {
    "passes": "def test_passes():\n    assert True\n",
    "skipped": "import pytest\n\ndef test_skipped():\n    pytest.skip('no database here')\n",
    "xfailed": (
        "import pytest\n\n@pytest.mark.xfail(reason='known bug')\n"
        "def test_xfailed():\n    assert False\n"
    ),
    "xpassed": (
        "import pytest\n\n@pytest.mark.xfail(reason='known bug', strict=False)\n"
        "def test_xpassed():\n    assert True\n"
    ),
    "strict_xpass": (
        "import pytest\n\n@pytest.mark.xfail(reason='fixed meanwhile')\n"
        "def test_strict_xpass():\n    assert True\n"
    ),
}


def run_pytest(tmp_path: Path, samples: list[str], ci: bool) -> subprocess.CompletedProcess[str]:
    """One pytest process (each costs seconds: it imports the project) over the samples."""
    test_file = tmp_path / "test_samples.py"
    test_file.write_text("\n\n".join(SAMPLES[name] for name in ["passes", *samples]))
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(ROOT / "pyproject.toml"),  # the project's settings (xfail_strict, ...)
            "--rootdir",
            str(tmp_path),
            "-p",
            "tests.conftest",  # the project's hooks
            "-p",
            "no:cacheprovider",
            str(test_file),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


NOT_AS_WRITTEN = ["skipped", "xfailed", "xpassed"]


def test_in_ci_a_skip_an_xfail_or_an_xpass_fails_the_run(tmp_path: Path) -> None:
    outside = run_pytest(tmp_path, NOT_AS_WRITTEN, ci=False)
    assert outside.returncode == 0, outside.stdout + outside.stderr
    in_ci = run_pytest(tmp_path, NOT_AS_WRITTEN, ci=True)
    assert in_ci.returncode == 1, in_ci.stdout + in_ci.stderr
    for header in (
        "CI: 1 test(s) skipped",
        "CI: 1 test(s) expected to fail (xfail)",
        "CI: 1 test(s) marked xfail but passed (xpass)",
    ):
        assert header in in_ci.stdout, in_ci.stdout
    for sample in NOT_AS_WRITTEN:
        assert f"test_samples.py::test_{sample}" in in_ci.stdout
    assert "test_samples.py::test_passes" not in in_ci.stdout


def test_in_ci_a_clean_run_passes_and_an_xfail_that_passes_fails_everywhere(
    tmp_path: Path,
) -> None:
    clean = run_pytest(tmp_path, [], ci=True)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    fixed = run_pytest(tmp_path, ["strict_xpass"], ci=False)
    assert fixed.returncode == 1, fixed.stdout + fixed.stderr
    assert "XPASS(strict)" in fixed.stdout
