"""checkov over terraform/: zero failed checks, and every IAM policy document really evaluated."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
from tests.terraform.helpers import REPO_ROOT, TERRAFORM_DIR, Make

pytestmark = [pytest.mark.terraform, pytest.mark.slow]

CHECKOV = REPO_ROOT / ".venv-tools" / "checkov" / "bin" / "checkov"
# checkov's IAM checks; a policy document that none of them reports was not evaluated (checkov
# silently gives up on some expressions, e.g. a `for` inside `resources`).
IAM_DOCUMENT_CHECKS = {"CKV_AWS_109", "CKV_AWS_110", "CKV_AWS_111", "CKV_AWS_356"}


@pytest.fixture(scope="module")
def checkov_report(make: Make) -> dict[str, Any]:
    """checkov's JSON report over terraform/ (installs checkov's own venv when it is missing)."""
    if not CHECKOV.exists():
        result = make("tools-checkov", timeout=900, check=False)
        if result.returncode != 0:
            pytest.skip(
                "checkov could not be installed into .venv-tools/checkov "
                f"(`make tools-checkov` failed: {result.stderr.strip()[-500:]})"
            )
    result = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(TERRAFORM_DIR),
            "--framework",
            "terraform",
            "--skip-download",
            "--output",
            "json",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode in (0, 1), f"checkov crashed:\n{result.stderr[-4000:]}"
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_finds_no_failed_check(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range']})"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert summary["failed"] == 0, "\n".join(failed)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 100, summary


def test_every_skip_carries_its_reason(checkov_report: dict[str, Any]) -> None:
    skipped = checkov_report["results"]["skipped_checks"]
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) > 20, f"{check['check_id']} on {check['resource']} skipped without why"


def test_every_iam_policy_document_is_evaluated(checkov_report: dict[str, Any]) -> None:
    results = checkov_report["results"]
    seen: dict[str, set[str]] = {}
    for kind in ("passed_checks", "failed_checks", "skipped_checks"):
        for check in results[kind]:
            if ".aws_iam_policy_document." in f".{check['resource']}":
                seen.setdefault(check["resource"], set()).add(check["check_id"])
    documents = {
        line.split('"')[3]
        for path in TERRAFORM_DIR.rglob("*.tf")
        for line in path.read_text().splitlines()
        if line.startswith('data "aws_iam_policy_document"')
    }
    # module.platform.module.ci[0].aws_iam_policy_document.trust, ...data["models"]: the name is
    # the last part once the instance keys are gone.
    evaluated = {re.sub(r"\[[^]]*\]", "", resource).rsplit(".", 1)[-1] for resource in seen}
    assert documents <= evaluated, f"checkov did not evaluate {sorted(documents - evaluated)}"
    for resource, checks in seen.items():
        assert checks >= IAM_DOCUMENT_CHECKS, f"{resource} missed {IAM_DOCUMENT_CHECKS - checks}"
