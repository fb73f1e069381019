"""Tell people about an alarm: SNS with the SageMaker backend, a log line (and a record) locally.

The SNS topic is Terraform's ``sns_topic_arn`` (``SKINLESION_SNS_TOPIC_ARN``), the one its
subscriptions (e-mail, chat) and the CloudWatch alarms already use. Locally the notification is
logged at WARNING and appended to ``<local root>/monitoring/notifications.jsonl``, so a demo or
a test can see what would have been sent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SUBJECT_LIMIT = 100  # SNS: at most 100 printable ASCII characters, no line breaks
NOTIFICATIONS_FILE = "notifications.jsonl"


class NotificationError(RuntimeError):
    """A notification could not be sent; the message says what is missing."""


@dataclass(frozen=True)
class Notification:
    """What was sent, where."""

    subject: str
    message: str
    channel: str  # "sns" or "log"
    target: str  # the topic ARN or the local record file
    message_id: str = ""
    sent_at: str = ""


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


def send_notification(
    backend: str,
    subject: str,
    message: str,
    *,
    topic_arn: str = "",
    sns_client: Any = None,
    record_dir: Path | None = None,
) -> Notification:
    """Publish to SNS (``backend=sagemaker``) or log and record locally (``backend=local``)."""
    sent_at = datetime.now(UTC).isoformat(timespec="seconds")
    if backend == "sagemaker":
        if not topic_arn:
            raise NotificationError(
                "No SNS topic to notify: set SKINLESION_SNS_TOPIC_ARN or the Terraform output "
                "sns_topic_arn."
            )
        if sns_client is None:
            from skinlesion.aws import client_factory_from_environment

            sns_client = client_factory_from_environment().client("sns")
        response = sns_client.publish(TopicArn=topic_arn, Subject=subject, Message=message)
        log.info("Notified %s (message %s): %s", topic_arn, response.get("MessageId"), subject)
        return Notification(
            subject, message, "sns", topic_arn, str(response.get("MessageId", "")), sent_at
        )
    if backend != "local":
        raise ValueError(f"Unknown backend {backend!r}. Accepted: local, sagemaker.")
    if record_dir is None:
        from skinlesion.backends.local import LocalSettings

        record_dir = LocalSettings.from_environment().root / "monitoring"
    record_dir.mkdir(parents=True, exist_ok=True)
    record = record_dir / NOTIFICATIONS_FILE
    notification = Notification(subject, message, "log", str(record), "", sent_at)
    with record.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(asdict(notification)) + "\n")
    log.warning("MONITORING ALARM %s", subject)
    return notification
