"""checkov on terraform/: no failed check, and every skipped one says why, next to its resource.

checkov's pinned dependencies clash with the project's, so it lives in its own virtualenv:
`make checkov` creates build/checkov and runs it. A missing checkov fails this test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.terraform.module import ROOT, TERRAFORM


def checkov() -> str:
    for candidate in (
        os.environ.get("CHECKOV"),
        str(ROOT / "build" / "checkov" / "bin" / "checkov"),
        shutil.which("checkov"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail(
        "checkov is not installed: `make checkov` installs it in build/checkov "
        "(or set CHECKOV to its path)",
        pytrace=False,
    )


def test_checkov_finds_no_failed_check_and_every_skip_is_justified():
    command = [checkov(), "-d", str(TERRAFORM), "--framework", "terraform"]
    result = subprocess.run(
        [*command, "--skip-download", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.stdout.strip(), result.stderr[-2000:]
    report = json.loads(result.stdout)
    results = report["results"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in results["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 50, report["summary"]
    for check in results["skipped_checks"]:
        reason = (check.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason) >= 20, f"{check['check_id']} on {check['resource']}: no reason given"
