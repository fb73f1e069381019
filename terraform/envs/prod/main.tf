# Production environment: the platform module with this environment's settings.

locals {
  environment = "prod"
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
      # The cost-allocation tag the budget counts; the SageMaker backend tags what it creates
      # with the same key (docs/aws.md).
      "skinlesion:prefix" = local.name_prefix
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
  kubeflow_service_account           = var.kubeflow_service_account
  pipeline_may_approve               = var.pipeline_may_approve
  log_retention_days                 = var.log_retention_days
  manage_shared_sagemaker_log_groups = var.manage_shared_sagemaker_log_groups
  capture_expiration_days            = var.capture_expiration_days
  staging_expiration_days            = var.staging_expiration_days
  checkpoint_expiration_days         = var.checkpoint_expiration_days
  external_image_repository_arns     = var.external_image_repository_arns
  require_job_output_kms_key         = var.require_job_output_kms_key
  vpc_id                             = var.vpc_id
  subnet_ids                         = var.subnet_ids
  security_group_ids                 = var.security_group_ids
  permissions_boundary_arn           = var.permissions_boundary_arn
  alert_emails                       = var.alert_emails
  latency_p99_threshold_ms           = var.latency_p99_threshold_ms
  monthly_budget_usd                 = var.monthly_budget_usd

  enable_ci_role              = var.enable_ci_role
  github_repository           = var.github_repository
  github_refs                 = var.github_refs
  github_environments         = var.github_environments
  create_github_oidc_provider = var.create_github_oidc_provider
  terraform_state_bucket      = var.terraform_state_bucket
  terraform_state_key         = var.terraform_state_key
  terraform_state_lock_table  = var.terraform_state_lock_table
  terraform_state_region      = var.terraform_state_region
  terraform_state_kms_key_arn = var.terraform_state_kms_key_arn
}
