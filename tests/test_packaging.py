"""hwnas installs under ``hwnas.`` only, and runs from a Determined context without installing.

A fresh virtual environment gets the project's dependencies through a ``.pth`` file pointing at
this interpreter's site-packages (no downloads), then

* as a Determined task does: the repository is materialised with Determined's own context
  reader (``.detignore`` applied) and the entrypoints run from it with nothing installed;
* as a user does: hwnas's wheel and the registry's ``spaces`` package (Hugging Face Spaces
  utilities, the collision that motivated the layout) are installed side by side, and
  ``import spaces`` is theirs while every ``hwnas`` command works.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]


def test_pyproject_maps_every_package_folder() -> None:
    """Each room folder with an ``__init__.py`` is listed as a package (else the wheel lacks it)."""
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = tool["package-dir"]
    listed = set(tool["packages"])
    found = set()
    for package, folder in mapping.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([package, *rel.parts]))
    assert found == listed, f"pyproject packages differ from the folders: {found ^ listed}"


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{argv} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A venv without hwnas whose dependencies come from this interpreter's site-packages."""
    root = tmp_path_factory.mktemp("venv")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = next((venv / "lib").glob("python3*/site-packages"))
    # A path line only: the editable hwnas finder of this interpreter is not loaded there.
    (purelib / "_hwnas_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "HWNAS_NB201_TABLE")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return venv, env


def _materialise_context(dest: Path) -> None:
    """Write the files ``det experiment create ... .`` would upload (Determined's reader)."""
    from determined.common import context as det_context

    for item in det_context.read_v1_context(REPO):
        target = dest / item.path
        if item.type == ord("5"):  # a directory entry of the tar-like listing
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(item.content or ""))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pathspec warns about Determined
def test_entrypoints_run_from_a_determined_context_without_install(
    bare_venv: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    venv, env = bare_venv
    python = str(venv / "bin" / "python")
    # Nothing named hwnas is importable outside the context directory.
    probe = "import importlib.util as u; print(u.find_spec('hwnas'))"
    assert _run([python, "-c", probe], tmp_path, env).strip() == "None"
    context = tmp_path / "context"
    _materialise_context(context)
    modules = ("hwnas.trials.train", "hwnas.driver.determined", "hwnas.trials.local")
    for module in (*modules, "hwnas.trials.worker"):
        assert "usage:" in _run([python, "-m", module, "--help"], context, env)
    where = _run([python, "-c", "import hwnas.spaces as s; print(s.__file__)"], context, env)
    assert Path(where.strip()) == context / "spaces" / "__init__.py"


def _install_spaces(python: str, env: dict[str, str], cwd: Path) -> None:
    """The registry's ``spaces`` package and what its import needs (httpx); not gradio, which
    only its Gradio helpers import (hundreds of MB). Skips when the registry is unreachable."""
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "-q"]
    for argv in ([*pip, "--no-deps", "spaces"], [*pip, "httpx"]):
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            pytest.skip(f"cannot install from the package registry: {proc.stderr.strip()}")


def test_wheel_installs_beside_huggingface_spaces(
    bare_venv: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    venv, env = bare_venv
    python = str(venv / "bin" / "python")
    wheels = tmp_path / "wheels"
    # Build from a copy: setuptools writes build/ and *.egg-info beside the sources.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build"))
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(source),
        ],
        tmp_path,
        {**env, "PATH": os.environ["PATH"]},
    )
    hwnas_wheel = next(wheels.glob("hwnas-*.whl"))
    with zipfile.ZipFile(hwnas_wheel) as wheel:  # package data: the NB201 table and its notice
        assert {"hwnas/spaces/data/nb201_cifar.csv.gz", "hwnas/spaces/data/NOTICE.md"} <= set(
            wheel.namelist()
        )
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps"]
    _run([*pip, str(hwnas_wheel)], tmp_path, env)
    _install_spaces(python, env, tmp_path)
    work = tmp_path / "elsewhere"  # not the repository: only installed code is importable
    work.mkdir()

    theirs = _run(
        [python, "-c", "import spaces; print(spaces.__file__); print(callable(spaces.GPU))"],
        work,
        env,
    ).split()
    purelib = next((venv / "lib").glob("python3*/site-packages"))
    assert Path(theirs[0]) == purelib / "spaces" / "__init__.py" and theirs[1] == "True"
    ours = _run([python, "-c", "import hwnas.spaces as s; print(s.__file__)"], work, env)
    assert Path(ours.strip()) == purelib / "hwnas" / "spaces" / "__init__.py"

    hwnas = str(venv / "bin" / "hwnas")
    assert re.search(r"\d+\.\d+\.\d+", _run([hwnas, "--version"], work, env))
    assert "unique" in _run([hwnas, "space", "info", "nb201"], work, env)
    table = "from hwnas.spaces.nb201_table import load_table as t; print(t().path, t().num_rows)"
    where, rows = _run([python, "-c", table], work, env).split()
    assert Path(where) == purelib / "hwnas" / "spaces" / "data" / "nb201_cifar.csv.gz"
    assert rows == "15625"
    arch = _run([hwnas, "space", "sample", "nb201", "--n", "1", "--seed", "0"], work, env)
    measured = _run(
        [
            hwnas,
            "latency",
            "measure",
            "--space",
            "nb201",
            "--option",
            "C=8",
            "--option",
            "N=1",
            "--arch",
            arch.strip().splitlines()[-1],
            "--input",
            "1x16x16",
            "--json",
        ],
        work,
        env,
    )
    assert '"median_ms"' in measured
    # A whole local search: its warm workers start as `python -m hwnas.trials.worker` there.
    config = work / "tiny.yaml"
    config.write_text((REPO / "experiment_yamls" / "local_smoke.yaml").read_text())
    out = _run([hwnas, "search", str(config), "--out", str(work / "run")], work, env, 600)
    assert "0 failed" in out, out
    _run([hwnas, "report", str(work / "run")], work, env)
    _run([hwnas, "export", str(work / "run"), "--rank", "1"], work, env)
    assert (work / "run" / "export" / "rank1" / "model.onnx").is_file()
