"""The words of an alarm: the subject and body that the backend sends (SNS on AWS, a log line
and a record locally)."""

from __future__ import annotations

from typing import Any

SUBJECT_LIMIT = 100  # SNS: at most 100 printable ASCII characters, no line breaks


def notification_text(
    summary: dict[str, Any], *, endpoint_name: str, report_uri: str = ""
) -> tuple[str, str]:
    """Subject and body for a monitoring summary (``monitoring_summary.json``)."""
    headline = str(summary.get("headline", "monitoring alarm"))
    subject = f"[skinlesion] {endpoint_name}: {headline}"
    subject = "".join(c if 32 <= ord(c) < 127 else "?" for c in subject)
    if len(subject) > SUBJECT_LIMIT:
        subject = subject[: SUBJECT_LIMIT - 3] + "..."
    window = summary.get("window", {})
    lines = [
        f"Endpoint {endpoint_name}: {headline}.",
        "",
        f"Window: {window.get('images', 0)} images from {window.get('records', 0)} requests, "
        f"{window.get('first_inference_time')} to {window.get('last_inference_time')}.",
        "",
        "Violations:",
    ]
    for violation in summary.get("violations") or []:
        name = violation.get("feature_name") or violation.get("metric_name")
        lines.append(f"- {name} ({violation['constraint_check_type']}): {violation['description']}")
    if not summary.get("violations"):
        lines.append("- none")
    if report_uri:
        lines += ["", f"Report: {report_uri}"]
    return subject, "\n".join(lines)
