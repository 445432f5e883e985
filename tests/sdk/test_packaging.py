"""The SDK installs alone: an empty virtual environment, `pip install clients/python`, and
nothing of the server (Litestar, asyncpg, psycopg) comes with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SDK = Path(__file__).resolve().parents[2] / "clients" / "python"
SERVER_ONLY = {"litestar", "asyncpg", "psycopg", "yoyo-migrations", "uvicorn", "typer"}


def test_sdk_installs_alone_into_an_empty_venv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(SDK)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {line.split("==")[0].lower() for line in listed.splitlines()}
    assert {"runtime-node-client", "httpx", "msgspec"} <= names, names
    assert not names & SERVER_ONLY, names & SERVER_ONLY
    smoke = subprocess.run(
        [
            str(python),
            "-c",
            "import runtime_node_client as r; from runtime_node_client import errors;"
            "print(r.__version__, len(errors.ERROR_BY_CODE))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert smoke.returncode == 0, smoke.stderr
