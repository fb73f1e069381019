# Alerts for the endpoint, the training jobs, model approvals and cost: CloudWatch alarms,
# EventBridge rules and an AWS Budgets alert, all delivered to one KMS-encrypted SNS topic; the
# SageMaker log groups with their retention.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  training_failed_rule = "${var.name_prefix}-training-job-failed"
  model_approved_rule  = "${var.name_prefix}-model-package-approved"
  endpoint_dimensions = {
    EndpointName = var.endpoint_name
    VariantName  = var.endpoint_variant_name
  }
}

# --- SNS -------------------------------------------------------------------------------------

resource "aws_sns_topic" "alerts" {
  name              = "${var.name_prefix}-alerts"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

data "aws_iam_policy_document" "alerts" {
  statement {
    sid = "AccountManagesTopic"
    actions = [
      "sns:GetTopicAttributes",
      "sns:SetTopicAttributes",
      "sns:Subscribe",
      "sns:ListSubscriptionsByTopic",
      "sns:Publish",
    ]
    resources = [aws_sns_topic.alerts.arn]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "EventBridgeRulesPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "CloudWatchAlarmsPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}:alarm:*"]
    }
  }

  statement {
    sid       = "BudgetsPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]

    principals {
      type        = "Service"
      identifiers = ["budgets.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:budgets::${local.account_id}:*"]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sns_topic_policy" "alerts" {
  arn    = aws_sns_topic.alerts.arn
  policy = data.aws_iam_policy_document.alerts.json
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.alert_emails)

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

# --- EventBridge -----------------------------------------------------------------------------

resource "aws_cloudwatch_event_rule" "training_failed" {
  name        = local.training_failed_rule
  description = "A SageMaker training job of ${var.name_prefix} failed"
  event_pattern = jsonencode({
    source        = ["aws.sagemaker"]
    "detail-type" = ["SageMaker Training Job State Change"]
    detail = {
      TrainingJobStatus = ["Failed"]
      TrainingJobName   = [{ prefix = "${var.name_prefix}-" }]
    }
  })
  tags = var.tags
}

# The human in the loop: a person approves a version (the pipeline role may not, see the identity
# module); this rule tells the topic, and the deploy-only run is started from it (docs/aws.md).
resource "aws_cloudwatch_event_rule" "model_approved" {
  name        = local.model_approved_rule
  description = "A model package in ${var.model_package_group_name} was approved"
  event_pattern = jsonencode({
    source        = ["aws.sagemaker"]
    "detail-type" = ["SageMaker Model Package State Change"]
    detail = {
      ModelPackageGroupName = [var.model_package_group_name]
      ModelApprovalStatus   = ["Approved"]
    }
  })
  tags = var.tags
}

resource "aws_cloudwatch_event_target" "training_failed" {
  rule      = aws_cloudwatch_event_rule.training_failed.name
  target_id = "sns"
  arn       = aws_sns_topic.alerts.arn
}

resource "aws_cloudwatch_event_target" "model_approved" {
  rule      = aws_cloudwatch_event_rule.model_approved.name
  target_id = "sns"
  arn       = aws_sns_topic.alerts.arn
}

# --- CloudWatch alarms -----------------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "endpoint_5xx" {
  alarm_name          = "${var.name_prefix}-endpoint-5xx"
  alarm_description   = "The endpoint ${var.endpoint_name} answers 5xx errors (also a blue/green rollback alarm)."
  namespace           = "AWS/SageMaker"
  metric_name         = "Invocation5XXErrors"
  dimensions          = local.endpoint_dimensions
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 2
  threshold           = var.endpoint_5xx_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "endpoint_latency_p99" {
  alarm_name          = "${var.name_prefix}-endpoint-latency-p99"
  alarm_description   = "p99 model latency of ${var.endpoint_name} is above ${var.latency_p99_threshold_ms} ms (also a blue/green rollback alarm)."
  namespace           = "AWS/SageMaker"
  metric_name         = "ModelLatency"
  dimensions          = local.endpoint_dimensions
  extended_statistic  = "p99"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  threshold           = var.latency_p99_threshold_ms * 1000 # ModelLatency is in microseconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}

# SageMaker publishes no metric for failed training jobs; the EventBridge rule that matches them
# does (TriggeredRules), so the alarm counts the rule's matches.
resource "aws_cloudwatch_metric_alarm" "training_failed" {
  alarm_name          = "${var.name_prefix}-training-job-failed"
  alarm_description   = "A SageMaker training job named ${var.name_prefix}-* failed."
  namespace           = "AWS/Events"
  metric_name         = "TriggeredRules"
  dimensions          = { RuleName = local.training_failed_rule }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}

# --- SageMaker log groups ------------------------------------------------------------------

# SageMaker writes job and endpoint logs to these groups and creates them, when missing, with no
# expiry and no key. Created here first, they keep log_retention_days and the project key.
# TrainingJobs and ProcessingJobs are shared by every SageMaker job of the account and region,
# so one environment per account and region manages them (manage_shared_sagemaker_log_groups).
resource "aws_cloudwatch_log_group" "sagemaker_jobs" {
  #checkov:skip=CKV_AWS_338:Job logs are debugging aids, kept log_retention_days (30 dev / 90 prod) to bound cost; who did what is in CloudTrail, job metrics in CloudWatch metrics.
  for_each = var.manage_shared_sagemaker_log_groups ? toset(["TrainingJobs", "ProcessingJobs"]) : toset([])

  name              = "/aws/sagemaker/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_cloudwatch_log_group" "endpoint" {
  #checkov:skip=CKV_AWS_338:Endpoint container logs are debugging aids, kept log_retention_days (30 dev / 90 prod) to bound cost; requests are audited through data capture in S3.
  name              = "/aws/sagemaker/Endpoints/${var.endpoint_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

# --- Dashboard -------------------------------------------------------------------------------

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name_prefix
  dashboard_body = jsonencode({
    widgets = [
      {
        type   = "metric"
        x      = 0
        y      = 0
        width  = 12
        height = 6
        properties = {
          title  = "Endpoint invocations and errors"
          region = local.region
          stat   = "Sum"
          period = 60
          metrics = [
            ["AWS/SageMaker", "Invocations", "EndpointName", var.endpoint_name, "VariantName", var.endpoint_variant_name],
            [".", "Invocation4XXErrors", ".", ".", ".", "."],
            [".", "Invocation5XXErrors", ".", ".", ".", "."],
          ]
        }
      },
      {
        type   = "metric"
        x      = 12
        y      = 0
        width  = 12
        height = 6
        properties = {
          title  = "Model latency (microseconds)"
          region = local.region
          period = 60
          metrics = [
            ["AWS/SageMaker", "ModelLatency", "EndpointName", var.endpoint_name, "VariantName", var.endpoint_variant_name, { stat = "p50" }],
            ["...", { stat = "p99" }],
          ]
          annotations = {
            horizontal = [{ label = "p99 alarm", value = var.latency_p99_threshold_ms * 1000 }]
          }
        }
      },
      {
        type   = "metric"
        x      = 0
        y      = 6
        width  = 12
        height = 6
        properties = {
          title  = "Endpoint instances: CPU and memory (%)"
          region = local.region
          stat   = "Average"
          period = 300
          metrics = [
            ["/aws/sagemaker/Endpoints", "CPUUtilization", "EndpointName", var.endpoint_name, "VariantName", var.endpoint_variant_name],
            [".", "MemoryUtilization", ".", ".", ".", "."],
          ]
        }
      },
      {
        type   = "metric"
        x      = 12
        y      = 6
        width  = 12
        height = 6
        properties = {
          title  = "Failed training jobs"
          region = local.region
          stat   = "Sum"
          period = 3600
          metrics = [
            ["AWS/Events", "TriggeredRules", "RuleName", local.training_failed_rule],
          ]
        }
      },
      {
        type   = "alarm"
        x      = 0
        y      = 12
        width  = 24
        height = 3
        properties = {
          title = "Alarms"
          alarms = [
            aws_cloudwatch_metric_alarm.endpoint_5xx.arn,
            aws_cloudwatch_metric_alarm.endpoint_latency_p99.arn,
            aws_cloudwatch_metric_alarm.training_failed.arn,
          ]
        }
      },
    ]
  })
}

# --- Budget ----------------------------------------------------------------------------------

resource "aws_budgets_budget" "monthly" {
  count = var.enable_budget ? 1 : 0

  account_id   = local.account_id
  name         = "${var.name_prefix}-monthly-cost"
  budget_type  = "COST"
  limit_amount = format("%.2f", var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  # Only what carries the cost-allocation tag, not the whole account. AWS Budgets spells a tag
  # filter "user:<key>$<value>"; the tag must be activated as a cost-allocation tag in Billing.
  cost_filter {
    name   = "TagKeyValue"
    values = [format("user:%s$%s", var.cost_allocation_tag_key, var.cost_allocation_tag_value)]
  }

  dynamic "notification" {
    for_each = toset(var.budget_alert_thresholds_percent)

    content {
      comparison_operator       = "GREATER_THAN"
      threshold                 = notification.value
      threshold_type            = "PERCENTAGE"
      notification_type         = "ACTUAL"
      subscriber_sns_topic_arns = [aws_sns_topic.alerts.arn]
    }
  }

  notification {
    comparison_operator       = "GREATER_THAN"
    threshold                 = 100
    threshold_type            = "PERCENTAGE"
    notification_type         = "FORECASTED"
    subscriber_sns_topic_arns = [aws_sns_topic.alerts.arn]
  }

  depends_on = [aws_sns_topic_policy.alerts]
}
