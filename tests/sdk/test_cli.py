"""`cpctl` end to end against the real server: every admin operation, roster, watch, revoke,
`--json` parsed, and the documented exit codes."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

CPCTL = Path(sys.executable).parent / "cpctl"


def cpctl(
    server: str, token: str, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTROL_PLANE_URL": server, "CONTROL_PLANE_TOKEN": token}
    env.pop("CONTROL_PLANE_ADMIN_TOKEN", None)
    return subprocess.run(
        [str(CPCTL), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def ok_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_cli_drives_every_admin_operation(server: str, admin_token: str) -> None:
    assert CPCTL.exists(), "cpctl is installed with the project"
    run = lambda *a: cpctl(server, admin_token, *a)  # noqa: E731

    participant = ok_json(run("participants", "create", "--name", "cli-ann", "--json"))
    pid = participant["participantId"]
    plain = run("participants", "create")
    assert plain.returncode == 0 and len(plain.stdout.strip()) == 36  # a bare id for scripts

    issued = ok_json(
        run("tokens", "issue", pid, "--label", "laptop", "--expires-in", "3600", "--json")
    )
    assert issued["token"].startswith("cpt_") and issued["expiresAt"]
    listed = ok_json(run("tokens", "list", pid, "--json"))
    assert [t["tokenId"] for t in listed] == [issued["tokenId"]]
    assert "token" not in listed[0] and listed[0]["label"] == "laptop"

    session = ok_json(
        run("sessions", "create", "--floor", "1.2", "--state", "provisioning", "--json")
    )
    sid = session["sessionId"]
    assert session["state"] == "provisioning" and session["minClientVersion"] == "1.2"
    member = ok_json(run("members", "set", sid, pid, "--role", "owner", "--json"))
    assert member["role"] == "owner" and member["state"] == "active"
    assert ok_json(run("sessions", "state", sid, "active", "--json"))["state"] == "active"
    assert ok_json(run("sessions", "floor", sid, "1.10", "--json"))["minClientVersion"] == "1.10"

    shown = ok_json(run("sessions", "show", sid, "--json"))
    assert shown["state"] == "active" and [m["participantId"] for m in shown["members"]] == [pid]
    table = run("sessions", "show", sid)
    assert table.returncode == 0 and "owner" in table.stdout

    page = ok_json(run("sessions", "list", "--state", "active", "--limit", "1000", "--json"))
    assert "items" in page and "next" in page
    participants = ok_json(run("participants", "list", "--limit", "5", "--json"))
    assert len(participants["items"]) <= 5
    shown_p = ok_json(run("participants", "show", pid, "--json"))
    assert shown_p["participantId"] == pid and len(shown_p["tokens"]) == 1

    # a daemon of that participant attaches; the operator sees it and revokes it
    token = issued["token"]
    node = f"cli-node-{secrets.token_hex(4)}"
    revision = ok_json(run("roster", sid, "--json"))["revision"]  # follow from here
    attach = httpx.post(
        f"{server}/v1/sessions/{sid}/runtime-nodes",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "participantId": pid,
            "nodeId": node,
            "clientVersion": "1.10",
            "capabilities": {"gpu": True},
            "healthState": "online",
        },
    )
    assert attach.status_code == 200, attach.text
    roster = ok_json(run("roster", sid, "--json"))
    assert [n["nodeId"] for n in roster["nodes"]] == [node]
    table = run("roster", sid)
    assert table.returncode == 0 and node in table.stdout and "registering" in table.stdout

    watched = cpctl(
        server,
        admin_token,
        "watch",
        sid,
        "--after",
        str(revision),
        "--count",
        "1",
        "--json",
        timeout=20,
    )
    lines = [json.loads(line) for line in watched.stdout.splitlines()]
    assert watched.returncode == 0, watched.stderr
    assert "error occurred" not in watched.stderr, watched.stderr  # the stream closed cleanly
    assert lines[-1]["kind"] == "attached" and lines[-1]["nodeId"] == node

    assert run("revoke", sid, node, "--reason", "lost laptop").returncode == 0
    assert ok_json(run("roster", sid, "--json"))["nodes"][0]["state"] == "revoked"
    assert run("tokens", "revoke", issued["tokenId"]).returncode == 0
    assert ok_json(run("tokens", "list", pid, "--json"))[0]["revokedAt"] is not None


def test_cli_exit_codes(server: str, admin_token: str) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    assert cpctl(server, admin_token, "sessions", "show", unknown).returncode == 3
    sid = cpctl(server, admin_token, "sessions", "create", "--floor", "2.0").stdout.strip()
    lowering = cpctl(server, admin_token, "sessions", "floor", sid, "1.0")
    assert lowering.returncode == 4 and "session.floor_lowering_forbidden" in lowering.stderr
    assert cpctl(server, "not-the-admin-token", "sessions", "list").returncode == 5
    assert cpctl(server, admin_token, "sessions", "floor", sid, "2.x").returncode == 7
    assert cpctl(server, admin_token, "sessions", "state", sid, "sideways").returncode == 2
    dead = cpctl("http://127.0.0.1:9", admin_token, "sessions", "list", timeout=120)
    assert dead.returncode == 6, dead.stderr
