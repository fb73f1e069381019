# The names below are the settings keys that `skinlesion` reads from `terraform output -json`.

data "aws_region" "current" {}

output "region" {
  description = "AWS region of every resource."
  value       = data.aws_region.current.name
}

output "name_prefix" {
  description = "Prefix that every SageMaker job, model, endpoint config and endpoint name must start with (\"<name_prefix>-\")."
  value       = var.name_prefix
}

output "data_bucket" {
  description = "Bucket of the raw data (ISIC images and ground truth)."
  value       = module.storage.bucket_names["data"]
}

output "processed_bucket" {
  description = "Bucket of the preprocessed data splits."
  value       = module.storage.bucket_names["processed"]
}

output "models_bucket" {
  description = "Bucket of model artifacts, evaluation reports and the KFP pipeline root."
  value       = module.storage.bucket_names["models"]
}

output "pipeline_root" {
  description = "KFP pipeline root (artifacts of every run)."
  value       = "s3://${module.storage.bucket_names["models"]}/pipeline-root"
}

output "capture_bucket" {
  description = "Bucket of endpoint data capture and monitoring reports."
  value       = module.storage.bucket_names["capture"]
}

output "capture_uri" {
  description = "S3 URI the endpoint's DataCaptureConfig writes to."
  value       = "s3://${module.storage.bucket_names["capture"]}/data-capture"
}

output "logs_bucket" {
  description = "Bucket of the S3 access logs."
  value       = module.storage.logs_bucket
}

output "kms_key_arn" {
  description = "Customer-managed KMS key for S3 objects, SageMaker volumes and job outputs."
  value       = module.storage.kms_key_arn
}

output "sagemaker_execution_role_arn" {
  description = "Role that SageMaker jobs and endpoints run as."
  value       = module.identity.sagemaker_execution_role_arn
}

output "kubeflow_irsa_role_arn" {
  description = "Role the Kubeflow profile's service account assumes (IRSA)."
  value       = module.identity.kubeflow_irsa_role_arn
}

output "ci_role_arn" {
  description = "Role the CI publish job assumes through GitHub's OIDC token (the AWS_ROLE_ARN repository variable); null when enable_ci_role is false."
  value       = one(module.ci[*].role_arn)
}

output "github_oidc_provider_arn" {
  description = "The account's IAM OIDC provider for GitHub Actions; null when enable_ci_role is false."
  value       = one(module.ci[*].github_oidc_provider_arn)
}

output "training_image_repository_url" {
  description = "ECR repository of the training/processing image."
  value       = module.registries.repository_urls["training"]
}

output "inference_image_repository_url" {
  description = "ECR repository of the inference image."
  value       = module.registries.repository_urls["inference"]
}

output "pipeline_image_repository_url" {
  description = "ECR repository of the pipeline (KFP component) image."
  value       = module.registries.repository_urls["pipeline"]
}

output "model_package_group_name" {
  description = "SageMaker model package group (model registry)."
  value       = module.registries.model_package_group_name
}

output "sns_topic_arn" {
  description = "Alerts topic (alarms, failed training, approved models, budget)."
  value       = module.observability.sns_topic_arn
}

output "endpoint_name" {
  description = "Name of the SageMaker endpoint that the alarms and dashboard watch."
  value       = local.endpoint_name
}

output "endpoint_alarm_names" {
  description = "Alarms for blue/green auto-rollback of endpoint updates."
  value       = module.observability.endpoint_alarm_names
}

output "kubeflow_namespace" {
  description = "Namespace of the Kubeflow profile whose pipeline service account the IRSA role trusts."
  value       = var.kubeflow_namespace
}

output "subnet_ids" {
  description = "VPC subnets of SageMaker jobs, models and endpoints (empty: no VPC)."
  value       = var.subnet_ids

  precondition {
    condition     = (length(var.subnet_ids) == 0) == (length(var.security_group_ids) == 0) && (length(var.subnet_ids) == 0 || var.vpc_id != null)
    error_message = "subnet_ids and security_group_ids go together, and need vpc_id: set all three (a VPC) or none."
  }
}

output "security_group_ids" {
  description = "VPC security groups of SageMaker jobs, models and endpoints (empty: no VPC)."
  value       = var.security_group_ids
}

output "metrics_namespace" {
  description = "CloudWatch namespace for the project's own metrics."
  value       = var.metrics_namespace
}

output "kubeflow_service_account" {
  description = "Service account (in kubeflow_namespace) that pipeline pods run as and the IRSA role trusts."
  value       = var.kubeflow_service_account
}

output "sagemaker_log_group_names" {
  description = "SageMaker log groups this environment manages (retention log_retention_days, the project key)."
  value       = module.observability.sagemaker_log_group_names
}
