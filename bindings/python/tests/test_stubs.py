"""The .pyi stubs are fresh (regenerated == committed), complete, and the samples type-check."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

import edgemodule
import edgemodule.aio

PKG = pathlib.Path(edgemodule.__file__).resolve().parent
ROOT = PKG.parent.parent
BIN = pathlib.Path(sys.executable).parent


def test_stubs_are_fresh(tmp_path):
    if not (BIN / "stubgen").exists():
        pytest.skip("mypy (stubgen) not installed")
    subprocess.run(["bash", str(ROOT / "gen-stubs.sh"), str(tmp_path)], check=True)
    for new in (tmp_path / "edgemodule").glob("*.pyi"):
        old = PKG / new.name
        assert old.exists() and old.read_text() == new.read_text(), f"{new.name} is stale: run gen-stubs.sh"
    assert (PKG / "py.typed").exists() and (PKG / "_native.pyi").exists()


def test_every_public_name_has_a_docstring():
    missing = []
    for mod in (edgemodule, edgemodule.aio):
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not (getattr(obj, "__doc__", None) or "").strip():
                missing.append(f"{mod.__name__}.{name}")
            if isinstance(obj, type):
                for attr, val in vars(obj).items():
                    if attr.startswith("_") or not callable(val) and not isinstance(val, property):
                        continue
                    if not (getattr(val, "__doc__", None) or "").strip():
                        missing.append(f"{mod.__name__}.{name}.{attr}")
    assert not missing, missing


def test_samples_type_check():
    if not (BIN / "mypy").exists():
        pytest.skip("mypy not installed")
    samples = ROOT.parent.parent / "samples" / "python" / "filter"
    r = subprocess.run([str(BIN / "mypy"), "--no-incremental", "--ignore-missing-imports",
                        str(samples / "filter_sync.py"), str(samples / "filter_async.py")],
                       capture_output=True, text=True, cwd=samples)
    assert r.returncode == 0, r.stdout + r.stderr
