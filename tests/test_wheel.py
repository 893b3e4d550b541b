"""A wheel built from the repository installs in a fresh venv and `symbptt derive` runs from it.

The fresh venv reaches torch, SymPy and Jinja through a .pth file pointing at the current
environment (so no download is needed), but symbptt itself, and its templates, come only from
the wheel: the test checks the imported package lives inside the new venv.
"""

from __future__ import annotations

import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_installs_and_runs(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("symbptt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "symbptt/templates/module.py.jinja" in names
    assert "symbptt/templates/document.tex.jinja" in names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    bin_dir = env_dir / ("Scripts" if sys.platform == "win32" else "bin")
    purelib = Path(
        subprocess.check_output(
            [
                str(bin_dir / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            text=True,
        ).strip()
    )
    deps = {sysconfig.get_path("purelib"), *site.getsitepackages()}
    (purelib / "deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(bin_dir / "python"),
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    work = tmp_path / "work"
    work.mkdir()
    where = subprocess.check_output(
        [str(bin_dir / "python"), "-c", "import symbptt; print(symbptt.__file__)"],
        cwd=work,
        text=True,
    )
    assert Path(where.strip()).is_relative_to(env_dir), where
    result = subprocess.run(
        [str(bin_dir / "symbptt"), "derive", "--steps", "3"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all match" in result.stdout
    assert (work / "generated" / "rnn_tanh_t3_i1_h2.py").is_file()
