output "sns_topic_arn" {
  description = "ARN of the KMS-encrypted alerts topic."
  value       = aws_sns_topic.alerts.arn
}

output "endpoint_alarm_names" {
  description = "Alarms on the endpoint (5xx errors, p99 latency): the deploy step's blue/green auto-rollback alarms."
  value = [
    aws_cloudwatch_metric_alarm.endpoint_5xx.alarm_name,
    aws_cloudwatch_metric_alarm.endpoint_latency_p99.alarm_name,
  ]
}

output "training_failed_alarm_name" {
  description = "Alarm that fires when a training job named <name_prefix>-* fails."
  value       = aws_cloudwatch_metric_alarm.training_failed.alarm_name
}

output "event_rule_names" {
  description = "EventBridge rules that publish to the alerts topic."
  value = [
    aws_cloudwatch_event_rule.training_failed.name,
    aws_cloudwatch_event_rule.model_approved.name,
  ]
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "budget_name" {
  description = "Name of the AWS Budgets cost budget; null when enable_budget is false."
  value       = one(aws_budgets_budget.monthly[*].name)
}

output "sagemaker_log_group_names" {
  description = "CloudWatch log groups of SageMaker that this environment manages (retention, key)."
  value = concat(
    [for group in aws_cloudwatch_log_group.sagemaker_jobs : group.name],
    [aws_cloudwatch_log_group.endpoint.name],
  )
}
