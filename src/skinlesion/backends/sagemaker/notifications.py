"""Alarms and metrics on AWS: SNS Publish and CloudWatch PutMetricData, within their limits."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from skinlesion.backends.base import Notification
from skinlesion.backends.errors import NotificationError

log = logging.getLogger(__name__)

# PutMetricData accepts at most 1,000 datums per request (CloudWatch API reference).
MAX_DATUMS_PER_CALL = 1000


def publish_notification(sns: Any, topic_arn: str, subject: str, message: str) -> Notification:
    """Publish to the SNS topic that the alarms' subscriptions (e-mail, chat) already use."""
    if not topic_arn:
        raise NotificationError(
            "No SNS topic to notify: set SKINLESION_SNS_TOPIC_ARN or the Terraform output "
            "sns_topic_arn."
        )
    response = sns.publish(TopicArn=topic_arn, Subject=subject, Message=message)
    message_id = str(response.get("MessageId", ""))
    log.info("Notified %s (message %s): %s", topic_arn, message_id, subject)
    sent_at = datetime.now(UTC).isoformat(timespec="seconds")
    return Notification(subject, message, "sns", topic_arn, message_id, sent_at)


def put_metrics(cloudwatch: Any, namespace: str, data: list[dict[str, Any]]) -> int:
    """PutMetricData in chunks; returns how many datums were sent."""
    for start in range(0, len(data), MAX_DATUMS_PER_CALL):
        cloudwatch.put_metric_data(
            Namespace=namespace, MetricData=data[start : start + MAX_DATUMS_PER_CALL]
        )
    log.info("Published %d monitoring metrics to CloudWatch namespace %s", len(data), namespace)
    return len(data)
