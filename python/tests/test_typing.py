"""The package's type hints hold for an application: ``mypy --strict`` passes on
``typing_example.py``, which uses the public API (configuration, ``acquire``,
``get_limiter``, ``try_acquire``, ``check_limiter``, the sync API, the FastAPI
dependencies, Prometheus).

mypy checks the installed package (``maturin develop`` puts ``python/`` on the path;
``py.typed`` marks it typed). Without mypy the test is skipped, loudly; under CI=true
it fails (scripts/test.sh installs it from python/requirements-test.txt)."""

import os
import pathlib
import subprocess
import sys
import warnings

import pytest

_HERE = pathlib.Path(__file__).resolve().parent


def _mypy_or_skip() -> None:
    try:
        import mypy  # noqa: F401
    except ImportError:
        message = "mypy not installed: the type hints are not checked (pip install mypy)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: a missing tool is a failure: {message}")
        warnings.warn(message)
        pytest.skip(message)


def test_the_public_api_passes_mypy_strict(tmp_path):
    _mypy_or_skip()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            str(_HERE / "typing_example.py"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # the installed package, not a stray ./ratesync
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_ships_its_marker():
    import ratesync

    package = pathlib.Path(ratesync.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "_native.pyi").is_file()
