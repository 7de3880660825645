"""Helpers for tests that run the real ``hwnas`` command in a subprocess (defines no tests).

``hwnas(...)`` runs the installed executable beside this interpreter; ``error_line`` checks
that stderr holds exactly one error line; ``read_only_argv`` runs a command with a folder
read-only (``chmod`` for a normal user; a private read-only bind mount for root, whom
permission bits do not stop); ``fake_search_config`` is a search whose trials are the fast
stand-in child of ``tests/test_local_runner_child.py`` (through ``runner.trial_command``).
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
HWNAS = Path(sys.executable).with_name("hwnas")
CHILD = Path(__file__).with_name("test_local_runner_child.py")

FAKE_CONFIG: dict[str, Any] = {
    "name": "cli-test",
    "seed": 7,
    "space": {"name": "nb201", "options": {"C": 8, "N": 1}},
    "data": {"dataset": "digits"},
    "objectives": [
        {"metric": "validation_accuracy", "goal": "maximize"},
        {"metric": "latency_ms", "goal": "minimize"},
    ],
    "strategy": {"name": "random"},
    "early_stopping": {"name": "none", "max_length": 1},
    "budget": {"max_trials": 3, "max_concurrent": 2},
    "runner": {"trial_timeout_s": 60, "devices": "cpu"},
}


def fake_search_config(*child_args: str, **sections: Any) -> dict[str, Any]:
    """``FAKE_CONFIG`` with sections replaced and the fake child (given ``child_args``)."""
    raw = copy.deepcopy(FAKE_CONFIG)
    raw.update(copy.deepcopy(sections))
    raw["runner"] = {
        **raw["runner"],
        "trial_command": [sys.executable, str(CHILD), *child_args],
    }
    return raw


def hwnas(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``hwnas`` with ``args``; skip when it is not installed."""
    if not HWNAS.exists():
        pytest.skip(f"{HWNAS} is not installed (pip install -e .)")
    return run([str(HWNAS), *args], cwd=cwd, env=env, timeout=timeout)


def run(
    argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None, timeout=300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def error_line(stderr: str, *, only: bool = True) -> str:
    """The one ``... error: ...`` line of ``stderr`` (``only``: and nothing else there)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert "Traceback" not in stderr, stderr
    assert len(errors) == 1, stderr
    if only:
        assert lines == errors, stderr
    return errors[0]


@functools.cache
def _bind_mounts_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", 'mount -o bind,ro "$0" "$0" && true', "/tmp"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def read_only_argv(folder: Path, argv: list[str]) -> list[str]:
    """``argv`` to run with ``folder`` read-only (call ``writable_again`` afterwards)."""
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return argv
    if not _bind_mounts_work():
        pytest.skip("running as root without mount namespaces: cannot make a folder read-only")
    script = 'mount -o bind,ro "$0" "$0" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, str(folder), *argv]


def writable_again(folder: Path) -> None:
    """Undo ``read_only_argv``'s ``chmod`` (so pytest can clean up)."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
