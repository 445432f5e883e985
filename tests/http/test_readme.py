"""The README's "Admin flow with curl" block works as written, against the real server: it keeps
the participant token and ends with a first heartbeat (204) and a roster showing the node online.

Only what must differ on a test server is substituted: its URL, the admin token (the README
reads the embedded cluster's `.local/admin-token`) and the node id (unique per run, since the
database is shared).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess

import pytest

from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"


def admin_flow_block() -> str:
    text = README.read_text()
    section = text[text.index("## Admin flow with curl") :]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_readme_admin_flow_reaches_a_first_heartbeat(server: str, admin_token: str) -> None:
    block = admin_flow_block()
    for original in ("BASE=http://127.0.0.1:8000", "$(cat .local/admin-token)", "laptop-1"):
        assert original in block
    node = f"readme-{secrets.token_hex(6)}"
    script = (
        block.replace("BASE=http://127.0.0.1:8000", f"BASE={server}")
        .replace("$(cat .local/admin-token)", "$README_ADMIN_TOKEN")
        .replace("laptop-1", node)
    )
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script + '\necho "TOKEN=$TOKEN"\n'],
        env={**os.environ, "README_ADMIN_TOKEN": admin_token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "204" in lines, proc.stdout
    token_line = [line for line in lines if line.startswith("TOKEN=")]
    assert token_line and token_line[0].startswith("TOKEN=cpt_"), proc.stdout
    answers = [json.loads(line) for line in lines if line.startswith("{")]
    assert [a.get("state") for a in answers] == ["active", "registering", "online", "online"]
    assert answers[-1] == {"nodeId": node, "state": "online", "healthState": "online"}
