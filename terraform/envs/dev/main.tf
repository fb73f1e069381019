# Development environment: the platform module with this environment's settings.

locals {
  environment = "dev"
  name_prefix = "${var.project}-${local.environment}"
}

provider "aws" {
  region              = var.region
  allowed_account_ids = var.allowed_account_ids

  default_tags {
    tags = merge(var.tags, {
      Project     = var.project
      Environment = local.environment
      ManagedBy   = "terraform"
    })
  }
}

module "platform" {
  source = "../../modules/platform"

  name_prefix                        = local.name_prefix
  force_destroy                      = var.force_destroy
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  oidc_provider_arn                  = var.oidc_provider_arn
  oidc_provider_url                  = var.oidc_provider_url
  kubeflow_namespace                 = var.kubeflow_namespace
  external_image_repository_arns     = var.external_image_repository_arns
  require_job_output_kms_key         = var.require_job_output_kms_key
  vpc_id                             = var.vpc_id
  subnet_ids                         = var.subnet_ids
  security_group_ids                 = var.security_group_ids
  permissions_boundary_arn           = var.permissions_boundary_arn
  alert_emails                       = var.alert_emails
  latency_p99_threshold_ms           = var.latency_p99_threshold_ms
  monthly_budget_usd                 = var.monthly_budget_usd
}
