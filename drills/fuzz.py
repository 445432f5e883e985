"""Drill: schemathesis against the served OpenAPI document, every /v1 operation, three times:
with a valid participant token (owner of a live session with an attached node), with the admin
token, and with a token that does not exist.

Each run covers schemathesis' examples, coverage, fuzzing and stateful phases (positive and
negative data) with a bounded number of examples per operation. Pass: no 5xx
(not_a_server_error), no response outside the documented schemas (response_schema_conformance),
statuses, content types and headers as documented, and no unhandled error in the server log.

schemathesis is not a dependency of the service: drills/run.sh installs it into its own venv
(.local/drills-venv) and points DRILLS_SCHEMATHESIS at it.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import secrets
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TypedDict

from drills import seed
from drills.harness import REPO_ROOT, Context, Verdict, connect, log

CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
)
EXAMPLES = int(os.environ.get("DRILLS_FUZZ_EXAMPLES", "40"))
RUN_TIMEOUT = 150.0
MIN_CASES = 200  # per token: fewer means the run did not really happen


def schemathesis_bin() -> str | None:
    configured = os.environ.get("DRILLS_SCHEMATHESIS")
    candidates = [configured] if configured else []
    candidates += [str(REPO_ROOT / ".local/drills-venv/bin/schemathesis"), "schemathesis"]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    return None


async def drill(ctx: Context) -> Verdict:
    verdict = Verdict("fuzz")
    binary = schemathesis_bin()
    if not verdict.check(binary is not None, "schemathesis not found (drills/run.sh installs it)"):
        return verdict
    assert binary is not None
    server = ctx.ensure_server()
    log_offset = len(server.log_text())
    url = ctx.database_url
    node = seed.fleet(url, 1, prefix=f"fz-{seed.run_id()}")[0]
    with connect(url) as conn:  # the participant owns its session: revoke and roster reach SQL
        seed.memberships(conn, [(node.session_id, node.participant_id)], role="owner")
    tokens = {
        "participant": node.token,
        "admin": ctx.admin_token,
        "invalid": "cpt_" + secrets.token_urlsafe(32),
    }
    config = _config(ctx.work_dir, node)
    seed_value = int(os.environ.get("DRILLS_FUZZ_SEED") or random.randrange(1, 2**31))
    totals = {"cases": 0, "failures": 0, "tool_errors": 0}
    try:
        for label, token in tokens.items():
            result = await _run(
                binary, server.base_url, token, label, seed_value, ctx.work_dir, config
            )
            if result["tool_errors"] and not (result["failures"] or result["errors"]):
                # schemathesis itself crashed on some operation (e.g. CPython 3.11.7's "AST
                # constructor recursion depth mismatch" inside hypothesis): run it again with
                # another seed rather than lose that operation's coverage.
                log(f"fuzz: {label}: schemathesis crashed ({result['tool_errors']}), rerunning")
                totals["tool_errors"] += result["tool_errors"]
                result = await _run(
                    binary, server.base_url, token, label, seed_value + 1, ctx.work_dir, config
                )
            totals["cases"] += result["cases"]
            totals["failures"] += result["failures"] + result["errors"]
            totals["tool_errors"] += result["tool_errors"]
            verdict.figures[f"{label}_cases"] = result["cases"]
            verdict.check(
                result["failures"] == 0 and result["errors"] == 0,
                f"{label} token: {result['failures']} failure(s), {result['errors']} error(s): "
                f"{result['summary']} (report {result['report']})",
            )
            verdict.check(
                result["cases"] >= MIN_CASES,
                f"{label} token: only {result['cases']} cases ran: {result['summary']}",
            )
    finally:
        seed.detach_all(url, [node])
    unhandled = server.log_text()[log_offset:].count("unhandled error")
    verdict.figures.update(
        cases=totals["cases"], failures=totals["failures"], tool_errors=totals["tool_errors"],
        unhandled=unhandled, examples=EXAMPLES, seed=seed_value,
    )  # fmt: skip
    verdict.check(unhandled == 0, f"{unhandled} unhandled error(s) in the server log")
    return verdict


class _RunResult(TypedDict):
    exit: int
    cases: int
    failures: int
    errors: int
    tool_errors: int
    summary: str
    report: Path


async def _run(
    binary: str,
    base_url: str,
    token: str,
    label: str,
    seed_value: int,
    work_dir: Path,
    config: Path,
) -> _RunResult:
    junit = work_dir / f"fuzz-{label}.xml"
    output = work_dir / f"fuzz-{label}.txt"
    args = [
        "--config-file", str(config),
        "run", f"{base_url}/schema/openapi.json",
        "--url", base_url,
        "--include-path-regex", "^/v1/",
        "--header", f"Authorization: Bearer {token}",
        "--checks", ",".join(CHECKS),
        "--mode", "all",
        "--max-examples", str(EXAMPLES),
        "--workers", "2",
        "--seed", str(seed_value),
        "--request-timeout", "10",
        "--max-failures", "50",
        "--suppress-health-check", "all",
        "--no-color",
        "--report", "junit",
        "--report-junit-path", str(junit),
    ]  # fmt: skip
    log(f"schemathesis with the {label} token ({EXAMPLES} examples per operation)")
    with open(output, "wb") as out:
        proc = await asyncio.create_subprocess_exec(
            binary, *args, stdout=out, stderr=asyncio.subprocess.STDOUT,
            cwd=work_dir, env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        )  # fmt: skip
        try:
            code = await asyncio.wait_for(proc.wait(), RUN_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            code = -1
    text = output.read_text(errors="replace")
    cases = re.search(r"(\d+) generated", text)
    summary = text.strip().splitlines()[-1] if text.strip() else "no output"
    counts = _junit(junit)
    return {
        "exit": code,
        "cases": int(cases.group(1)) if cases else 0,
        "failures": counts["failures"],
        "errors": counts["errors"],
        "tool_errors": counts["tool_errors"],
        "summary": summary.strip("= "),
        "report": output,
    }


def _config(work_dir: Path, node: seed.Node) -> Path:
    """Half of the generated ids are the seeded node's, session's and participant's, so that
    generated requests also get past authorization into the SQL functions."""
    known = {
        "sessions": node.session_id,
        "nodes": node.node_id,
        "participants": node.participant_id,
    }
    bindings = {
        "path.session_id": "sessions",
        "path.node_id": "nodes",
        "path.participant_id": "participants",
        "body.participantId": "participants",
        "body.nodeId": "nodes",
    }
    lines = []
    for name, value in known.items():
        lines += [f"[dictionaries.{name}]", f'values = ["{value}"]', ""]
    lines.append("[parameters]")
    for key, name in bindings.items():
        lines.append(f'"{key}" = {{ dictionary = "{name}", probability = 0.5 }}')
    path = work_dir / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _junit(path: Path) -> dict[str, int]:
    """Check failures, errors reaching the API (network, timeouts) and schemathesis' own
    crashes ("Runtime Error": a bug in the tool, not an answer of the API)."""
    counts = {"failures": 0, "errors": 0, "tool_errors": 0}
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        counts["errors"] = 1  # no report: the run itself failed
        return counts
    for case in root.iter("testcase"):
        counts["failures"] += len(case.findall("failure"))
        for error in case.findall("error"):
            text = (error.text or "").lstrip()
            counts["tool_errors" if text.startswith("Runtime Error") else "errors"] += 1
    return counts
