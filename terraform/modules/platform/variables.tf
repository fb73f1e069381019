variable "name_prefix" {
  description = "Prefix of every resource name, e.g. \"skinlesion-dev\": 3-20 lowercase letters, digits and hyphens."
  type        = string
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete buckets and image repositories that still hold data (throwaway environments only)."
  type        = bool
  default     = false
}

variable "kms_deletion_window_days" {
  description = "Days a scheduled deletion of the KMS key waits (7-30)."
  type        = number
  default     = 30
}

variable "intelligent_tiering_after_days" {
  description = "Days after which objects in the data buckets move to S3 Intelligent-Tiering."
  type        = number
  default     = 0
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which noncurrent object versions expire in the data buckets."
  type        = number
  default     = 90
}

variable "access_log_retention_days" {
  description = "Days S3 access logs are kept."
  type        = number
  default     = 365
}

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider that the Kubeflow IRSA role trusts."
  type        = string
}

variable "oidc_provider_url" {
  description = "Issuer URL of the EKS cluster's OIDC provider (with or without https://)."
  type        = string
}

variable "kubeflow_namespace" {
  description = "Namespace of the Kubeflow profile whose pipeline pods assume the IRSA role."
  type        = string
}

variable "kubeflow_service_account" {
  description = "Service account of the Kubeflow profile that pipeline pods run as, the only one the IRSA role trusts (not default-editor, which notebooks share)."
  type        = string
  default     = "skinlesion-pipeline-runner"
}

variable "pipeline_may_approve" {
  description = "Let the pipeline role approve model versions itself (auto-approval, dev only); false denies it setting ModelApprovalStatus=Approved."
  type        = bool
  default     = false
}

variable "external_image_repository_arns" {
  description = "Further ECR repository ARNs the SageMaker execution role may pull from (e.g. AWS Deep Learning Containers)."
  type        = list(string)
  default     = []
}

variable "require_job_output_kms_key" {
  description = "Only allow SageMaker jobs whose output KMS key is the project's key."
  type        = bool
  default     = true
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the project's own metrics (monitoring)."
  type        = string
  default     = "SkinLesion"
}

variable "vpc_id" {
  description = "VPC that SageMaker jobs and endpoints run in; null when they run without one."
  type        = string
  default     = null
}

variable "subnet_ids" {
  description = "Subnets (of vpc_id) for SageMaker jobs, models and endpoints; empty without a VPC."
  type        = list(string)
  default     = []
}

variable "security_group_ids" {
  description = "Security groups (of vpc_id) for SageMaker jobs, models and endpoints; empty without a VPC."
  type        = list(string)
  default     = []
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary for the roles, when the organisation requires one."
  type        = string
  default     = null
}

variable "endpoint_name" {
  description = "Name of the SageMaker endpoint the deploy step creates and the alarms watch; null means \"<name_prefix>-endpoint\"."
  type        = string
  default     = null
}

variable "alert_emails" {
  description = "E-mail addresses subscribed to the alerts topic."
  type        = list(string)
  default     = []
}

variable "endpoint_5xx_threshold" {
  description = "5xx errors per minute above which the endpoint alarm fires (2 of 3 minutes)."
  type        = number
  default     = 0
}

variable "latency_p99_threshold_ms" {
  description = "p99 model latency in milliseconds above which the latency alarm fires (3 of 5 minutes)."
  type        = number
  default     = 500
}

variable "monthly_budget_usd" {
  description = "Monthly cost budget in US dollars."
  type        = number
  default     = 300
}

variable "enable_budget" {
  description = "Create the AWS Budgets alert (moto's server cannot serve it: see docs/aws.md)."
  type        = bool
  default     = true
}

variable "enable_model_package_group" {
  description = "Create the SageMaker model package group (moto cannot delete it: see docs/aws.md)."
  type        = bool
  default     = true
}

variable "enable_ci_role" {
  description = "Create the role that the CI publish job assumes through GitHub's OIDC token (and, with create_github_oidc_provider, the provider); needs github_repository and terraform_state_bucket/key."
  type        = bool
  default     = true
}

variable "github_repository" {
  description = "GitHub repository (<owner>/<repo>) whose workflows may assume the CI role; required when enable_ci_role is true."
  type        = string
  default     = null
}

variable "github_refs" {
  description = "Git refs whose jobs without a GitHub environment may assume the CI role."
  type        = list(string)
  default     = ["refs/heads/main"]
}

variable "github_environments" {
  description = "GitHub environments whose jobs may assume the CI role (a job in an environment presents the environment, not its ref)."
  type        = list(string)
  default     = []
}

variable "create_github_oidc_provider" {
  description = "Create the account's OIDC provider for token.actions.githubusercontent.com; false uses the existing one (one per account)."
  type        = bool
  default     = true
}

variable "terraform_state_bucket" {
  description = "S3 bucket of the Terraform state (backend.hcl), which the CI role may read; required when enable_ci_role is true."
  type        = string
  default     = null
}

variable "terraform_state_key" {
  description = "Key of this environment's state object (backend.hcl), which the CI role may read; required when enable_ci_role is true."
  type        = string
  default     = null
}

variable "terraform_state_lock_table" {
  description = "DynamoDB lock table of the state (backend.hcl); null without DynamoDB locking."
  type        = string
  default     = null
}

variable "terraform_state_region" {
  description = "Region of the state bucket and lock table; null means the provider's region."
  type        = string
  default     = null
}

variable "terraform_state_kms_key_arn" {
  description = "Customer-managed KMS key of the state bucket, if any (null for SSE-S3 or aws/s3)."
  type        = string
  default     = null
}

variable "capture_expiration_days" {
  description = "Days after which endpoint data capture (capture bucket, data-capture/) expires."
  type        = number
  default     = 90
}

variable "staging_expiration_days" {
  description = "Days after which the SageMaker backend's staging copies (models bucket, staging/) expire."
  type        = number
  default     = 7
}

variable "checkpoint_expiration_days" {
  description = "Days after which training checkpoints (models bucket, checkpoints/) expire."
  type        = number
  default     = 14
}

variable "log_retention_days" {
  description = "Days CloudWatch Logs keeps the SageMaker job and endpoint logs."
  type        = number
  default     = 30
}

variable "manage_shared_sagemaker_log_groups" {
  description = "Create the account-wide /aws/sagemaker/TrainingJobs and ProcessingJobs log groups (one environment per account and region)."
  type        = bool
  default     = true
}

variable "cost_allocation_tag_key" {
  description = "Cost-allocation tag key the budget counts; every resource of the environment must carry it (the roots' default_tags do)."
  type        = string
  default     = "skinlesion:prefix"
}

variable "cost_allocation_tag_value" {
  description = "Value of the cost-allocation tag the budget counts; null means name_prefix."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
