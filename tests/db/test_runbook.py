"""Every fenced block of docs/operations.md runs in psql against the test database, as written.

A block runs inside `BEGIN; … ROLLBACK;` (a block with its own BEGIN/ROLLBACK runs as it is), so
the runbook's tuning and repair statements are proven without changing the shared database: the
settings and sweep bookkeeping must be byte-identical afterwards. A block may be preceded by an
HTML comment that says what it must do instead of succeeding:

    <!-- runbook: error="<text of the error psql prints>" -->
    <!-- runbook: pg_cron>=1.5 older-error="<the error older pg_cron prints>" -->
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.conftest import REPO_ROOT

RUNBOOK = REPO_ROOT / "docs" / "operations.md"
PG_BINDIR = Path(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"))
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
MARKER = re.compile(r"<!--\s*runbook:((?:(?!-->).)*)-->\s*\Z", re.DOTALL)
OPTION = re.compile(r'(pg_cron>=[\d.]+|[\w-]+="(?:[^"\\]|\\.)*")')
RUNNABLE = {"sql"}


@dataclass
class Block:
    line: int
    lang: str
    text: str
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"operations.md:{self.line}"


def runbook_blocks() -> list[Block]:
    doc = RUNBOOK.read_text()
    blocks = []
    for match in FENCE.finditer(doc):
        before = doc[: match.start()].rstrip()
        marker = MARKER.search(before)
        options: dict[str, str] = {}
        if marker:
            text = marker.group(1)
            for option in OPTION.findall(text):
                key, _, value = option.partition("=")
                options[key] = value[1:-1].replace('\\"', '"') if value.startswith('"') else value
            leftover = OPTION.sub("", text).strip()
            assert not leftover, f"unknown runbook marker text {leftover!r}"
        line = doc.count("\n", 0, match.start()) + 1
        blocks.append(Block(line, match.group(1), match.group(2), options))
    return blocks


BLOCKS = runbook_blocks()


def test_the_runbook_has_only_blocks_this_test_runs() -> None:
    assert len(BLOCKS) >= 10
    assert [str(b) for b in BLOCKS if b.lang not in RUNNABLE] == []


def pg_cron_version(db: psycopg.Connection) -> tuple[int, ...]:
    version = db.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'").fetchone()
    assert version is not None
    return tuple(int(p) for p in re.findall(r"\d+", str(version[0]))[:2])


def state_fingerprint(db: psycopg.Connection) -> tuple[object, ...]:
    """What a runbook block could change for good: the tunables and the jobs."""
    settings = db.execute("SELECT s::text FROM control_plane.settings s").fetchone()
    jobs = db.execute(
        "SELECT string_agg(j::text, ';' ORDER BY jobid) FROM cron.job j"
        " WHERE jobname LIKE 'runtime-node-%'"
    ).fetchone()
    return (settings, jobs)


def run_psql(database_url: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PG_BINDIR / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-d", database_url],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_runbook_block_runs_as_documented(
    block: Block, db: psycopg.Connection, database_url: str
) -> None:
    expected_error = block.options.get("error")
    minimum = block.options.get("pg_cron>")  # `pg_cron>=1.5` splits at its `=`
    if minimum is not None:
        wanted = tuple(int(p) for p in minimum.split("."))
        if pg_cron_version(db) < wanted:
            expected_error = block.options["older-error"]

    own_transaction = re.search(r"^\s*BEGIN\s*;", block.text, re.MULTILINE | re.IGNORECASE)
    script = block.text if own_transaction else f"BEGIN;\n{block.text}\nROLLBACK;\n"
    before = state_fingerprint(db)
    proc = run_psql(database_url, script)
    assert state_fingerprint(db) == before, f"{block} changed the database for good"

    if expected_error is None:
        assert proc.returncode == 0, f"{block} failed:\n{proc.stderr}"
        assert "ERROR" not in proc.stderr, proc.stderr
    else:
        assert proc.returncode != 0, f"{block} was documented to fail but succeeded"
        assert expected_error in proc.stderr, proc.stderr
