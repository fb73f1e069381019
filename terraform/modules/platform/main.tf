# The whole AWS side of one environment: storage, registries, observability, identity and the CI
# role wired together, so each envs/<name> root stays a provider, a backend and this module.

locals {
  endpoint_name = coalesce(var.endpoint_name, "${var.name_prefix}-endpoint")
}

module "storage" {
  source = "../storage"

  name_prefix                        = var.name_prefix
  force_destroy                      = var.force_destroy
  kms_deletion_window_days           = var.kms_deletion_window_days
  intelligent_tiering_after_days     = var.intelligent_tiering_after_days
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  access_log_retention_days          = var.access_log_retention_days
  capture_expiration_days            = var.capture_expiration_days
  staging_expiration_days            = var.staging_expiration_days
  checkpoint_expiration_days         = var.checkpoint_expiration_days
  tags                               = var.tags
}

module "registries" {
  source = "../registries"

  name_prefix                = var.name_prefix
  kms_key_arn                = module.storage.kms_key_arn
  force_delete               = var.force_destroy
  enable_model_package_group = var.enable_model_package_group
  tags                       = var.tags
}

module "observability" {
  source = "../observability"

  name_prefix              = var.name_prefix
  kms_key_arn              = module.storage.kms_key_arn
  endpoint_name            = local.endpoint_name
  model_package_group_name = module.registries.model_package_group_name
  alert_emails             = var.alert_emails
  endpoint_5xx_threshold   = var.endpoint_5xx_threshold
  latency_p99_threshold_ms = var.latency_p99_threshold_ms
  monthly_budget_usd       = var.monthly_budget_usd
  enable_budget            = var.enable_budget
  tags                     = var.tags

  cost_allocation_tag_key            = var.cost_allocation_tag_key
  cost_allocation_tag_value          = coalesce(var.cost_allocation_tag_value, var.name_prefix)
  log_retention_days                 = var.log_retention_days
  manage_shared_sagemaker_log_groups = var.manage_shared_sagemaker_log_groups
}

module "identity" {
  source = "../identity"

  name_prefix                    = var.name_prefix
  kms_key_arn                    = module.storage.kms_key_arn
  bucket_arns                    = module.storage.bucket_arns
  ecr_repository_arns            = values(module.registries.repository_arns)
  external_image_repository_arns = var.external_image_repository_arns
  model_package_group_name       = module.registries.model_package_group_name
  sns_topic_arn                  = module.observability.sns_topic_arn
  oidc_provider_arn              = var.oidc_provider_arn
  oidc_provider_url              = var.oidc_provider_url
  kubeflow_namespace             = var.kubeflow_namespace
  kubeflow_service_account       = var.kubeflow_service_account
  pipeline_may_approve           = var.pipeline_may_approve
  metrics_namespace              = var.metrics_namespace
  require_job_output_kms_key     = var.require_job_output_kms_key
  vpc_id                         = var.vpc_id
  permissions_boundary_arn       = var.permissions_boundary_arn
  tags                           = var.tags
}

module "ci" {
  source = "../ci"
  count  = var.enable_ci_role ? 1 : 0

  name_prefix                 = var.name_prefix
  github_repository           = var.github_repository
  github_refs                 = var.github_refs
  github_environments         = var.github_environments
  create_github_oidc_provider = var.create_github_oidc_provider
  ecr_repository_arns         = values(module.registries.repository_arns)
  terraform_state_bucket      = var.terraform_state_bucket
  terraform_state_key         = var.terraform_state_key
  terraform_state_lock_table  = var.terraform_state_lock_table
  terraform_state_region      = var.terraform_state_region
  terraform_state_kms_key_arn = var.terraform_state_kms_key_arn
  permissions_boundary_arn    = var.permissions_boundary_arn
  tags                        = var.tags
}
