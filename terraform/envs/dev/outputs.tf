# `make tf-outputs` writes these as JSON; `skinlesion` settings read them by these names.

output "region" {
  description = "AWS region of every resource."
  value       = module.platform.region
}

output "name_prefix" {
  description = "Prefix that every SageMaker job, model, endpoint config and endpoint name must start with (\"<name_prefix>-\")."
  value       = module.platform.name_prefix
}

output "data_bucket" {
  description = "Bucket of the raw data (ISIC images and ground truth)."
  value       = module.platform.data_bucket
}

output "processed_bucket" {
  description = "Bucket of the preprocessed data splits."
  value       = module.platform.processed_bucket
}

output "models_bucket" {
  description = "Bucket of model artifacts, evaluation reports and the KFP pipeline root."
  value       = module.platform.models_bucket
}

output "pipeline_root" {
  description = "KFP pipeline root (artifacts of every run)."
  value       = module.platform.pipeline_root
}

output "capture_bucket" {
  description = "Bucket of endpoint data capture and monitoring reports."
  value       = module.platform.capture_bucket
}

output "capture_uri" {
  description = "S3 URI the endpoint's DataCaptureConfig writes to."
  value       = module.platform.capture_uri
}

output "logs_bucket" {
  description = "Bucket of the S3 access logs."
  value       = module.platform.logs_bucket
}

output "kms_key_arn" {
  description = "Customer-managed KMS key for S3 objects, SageMaker volumes and job outputs."
  value       = module.platform.kms_key_arn
}

output "sagemaker_execution_role_arn" {
  description = "Role that SageMaker jobs and endpoints run as."
  value       = module.platform.sagemaker_execution_role_arn
}

output "kubeflow_irsa_role_arn" {
  description = "Role the Kubeflow profile's service account assumes (IRSA)."
  value       = module.platform.kubeflow_irsa_role_arn
}

output "ci_role_arn" {
  description = "Role the CI publish job assumes through GitHub's OIDC token (the AWS_ROLE_ARN repository variable); null when enable_ci_role is false."
  value       = module.platform.ci_role_arn
}

output "github_oidc_provider_arn" {
  description = "The account's IAM OIDC provider for GitHub Actions; null when enable_ci_role is false."
  value       = module.platform.github_oidc_provider_arn
}

output "training_image_repository_url" {
  description = "ECR repository of the training/processing image."
  value       = module.platform.training_image_repository_url
}

output "inference_image_repository_url" {
  description = "ECR repository of the inference image."
  value       = module.platform.inference_image_repository_url
}

output "pipeline_image_repository_url" {
  description = "ECR repository of the pipeline (KFP component) image."
  value       = module.platform.pipeline_image_repository_url
}

output "model_package_group_name" {
  description = "SageMaker model package group (model registry)."
  value       = module.platform.model_package_group_name
}

output "sns_topic_arn" {
  description = "Alerts topic (alarms, failed training, approved models, budget)."
  value       = module.platform.sns_topic_arn
}

output "endpoint_name" {
  description = "Name of the SageMaker endpoint that the alarms and dashboard watch."
  value       = module.platform.endpoint_name
}

output "endpoint_alarm_names" {
  description = "Alarms for blue/green auto-rollback of endpoint updates."
  value       = module.platform.endpoint_alarm_names
}

output "kubeflow_namespace" {
  description = "Namespace of the Kubeflow profile whose pipeline service account the IRSA role trusts."
  value       = module.platform.kubeflow_namespace
}

output "subnet_ids" {
  description = "VPC subnets of SageMaker jobs, models and endpoints (empty: no VPC)."
  value       = module.platform.subnet_ids
}

output "security_group_ids" {
  description = "VPC security groups of SageMaker jobs, models and endpoints (empty: no VPC)."
  value       = module.platform.security_group_ids
}

output "metrics_namespace" {
  description = "CloudWatch namespace for the project's own metrics."
  value       = module.platform.metrics_namespace
}

output "kubeflow_service_account" {
  description = "Service account (in kubeflow_namespace) that pipeline pods run as and the IRSA role trusts."
  value       = module.platform.kubeflow_service_account
}

output "sagemaker_log_group_names" {
  description = "SageMaker log groups this environment manages (retention log_retention_days, the project key)."
  value       = module.platform.sagemaker_log_group_names
}
