"""The repository stands on its own: every "contract §N" citation names a section of
docs/contract.md, and nothing points outside the repository for the contract."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import REPO_ROOT

CONTRACT = REPO_ROOT / "docs" / "contract.md"
# Spelled in pieces so that this file does not match itself.
OUTSIDE = re.compile("|".join([r"\.\./" + "shared/", "/work/" + "shared", r"\b" + "SP" + r"EC\b"]))
HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)?)\.? ", re.MULTILINE)
# "contract §6.1–6.7", "contract §4, §5, §6.2", "(contract §7)"
CITATION = re.compile(r"contract (§[\d.]+(?:\s*[–-]\s*§?[\d.]+)?(?:,\s*§[\d.]+(?:[–-][\d.]+)?)*)")


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [p for p in out.splitlines() if (REPO_ROOT / p).is_file()]


def contract_sections() -> set[str]:
    return set(HEADING.findall(CONTRACT.read_text()))


def test_contract_keeps_its_section_numbers() -> None:
    sections = contract_sections()
    assert {str(n) for n in range(1, 14)} <= sections
    assert {f"6.{n}" for n in range(1, 11)} <= sections


def test_every_contract_citation_names_a_section() -> None:
    sections = contract_sections()
    missing = []
    for path in tracked_files():
        try:
            text = (REPO_ROOT / path).read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for citation in CITATION.findall(line):
                for ref in re.findall(r"\d+(?:\.\d+)?", citation):
                    if ref.rstrip(".") not in sections:
                        missing.append(f"{path}:{number}: §{ref}")
    assert missing == []


def test_nothing_points_outside_the_repository_for_the_contract() -> None:
    offenders = []
    for path in tracked_files():
        try:
            text = (REPO_ROOT / path).read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path}:{number}")
    assert offenders == []
