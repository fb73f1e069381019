variable "region" {
  description = "AWS region of every resource, e.g. eu-west-1 (the EKS cluster's region)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1 or us-east-1."
  }
}

variable "allowed_account_ids" {
  description = "AWS account IDs this environment may be applied to; a plan against any other account fails. null allows any."
  type        = list(string)
  default     = null
}

variable "project" {
  description = "Project name: the first part of every resource name (<project>-prod-...)."
  type        = string
  default     = "skinlesion"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,10}$", var.project))
    error_message = "project must be 2-11 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider (aws iam list-open-id-connect-providers)."
  type        = string
}

variable "oidc_provider_url" {
  description = "Issuer URL of the EKS cluster's OIDC provider (aws eks describe-cluster --query cluster.identity.oidc.issuer)."
  type        = string
}

variable "kubeflow_namespace" {
  description = "Namespace of the Kubeflow profile that runs the pipelines (manifests/overlays/prod); its kubeflow_service_account assumes the IRSA role."
  type        = string
  default     = "skinlesion-prod"
}

variable "kubeflow_service_account" {
  description = "Service account of the profile that pipeline runs use (manifests/, pipelines/params/prod.yaml), the only one the IRSA role trusts; not default-editor, which notebooks share."
  type        = string
  default     = "skinlesion-pipeline-runner"
}

variable "pipeline_may_approve" {
  description = "Keep false: a person approves each model version (the pipeline role is denied ModelApprovalStatus=Approved); true would let the pipeline approve itself."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "Days CloudWatch Logs keeps the SageMaker training, processing and endpoint logs."
  type        = number
  default     = 90
}

variable "manage_shared_sagemaker_log_groups" {
  description = "Create the account-wide /aws/sagemaker/TrainingJobs and ProcessingJobs log groups; false in the second environment of a shared account and region (docs/aws.md)."
  type        = bool
  default     = true
}

variable "capture_expiration_days" {
  description = "Days after which endpoint data capture (s3://<capture bucket>/data-capture/) expires."
  type        = number
  default     = 90
}

variable "staging_expiration_days" {
  description = "Days after which the SageMaker backend's staging copies (s3://<models bucket>/staging/) expire."
  type        = number
  default     = 7
}

variable "checkpoint_expiration_days" {
  description = "Days after which training checkpoints (s3://<models bucket>/checkpoints/) expire."
  type        = number
  default     = 14
}

variable "alert_emails" {
  description = "E-mail addresses that receive alarms, failed-training and model-approval notices and budget alerts."
  type        = list(string)
  default     = []
}

variable "monthly_budget_usd" {
  description = "Monthly AWS cost budget in US dollars (alerts at 80% and 100% actual, 100% forecast)."
  type        = number
  default     = 1000
}

variable "latency_p99_threshold_ms" {
  description = "p99 model latency in milliseconds above which the endpoint latency alarm fires."
  type        = number
  default     = 500
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which overwritten or deleted object versions are removed from the data buckets."
  type        = number
  default     = 90
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete buckets and repositories that still hold data."
  type        = bool
  default     = false
}

variable "external_image_repository_arns" {
  description = "Further ECR repositories the SageMaker execution role may pull from, e.g. AWS Deep Learning Containers."
  type        = list(string)
  default     = []
}

variable "require_job_output_kms_key" {
  description = "Only allow SageMaker training and processing jobs whose output KMS key is the project's key."
  type        = bool
  default     = true
}

variable "vpc_id" {
  description = "VPC that SageMaker jobs and endpoints run in (grants the execution role its network interfaces); null for none."
  type        = string
  default     = null
}

variable "subnet_ids" {
  description = "Subnets of vpc_id that SageMaker jobs, models and endpoints run in; empty without a VPC."
  type        = list(string)
  default     = []
}

variable "security_group_ids" {
  description = "Security groups of vpc_id for SageMaker jobs, models and endpoints; empty without a VPC."
  type        = list(string)
  default     = []
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary for the IAM roles, when the organisation requires one."
  type        = string
  default     = null
}

variable "enable_ci_role" {
  description = "Create the role (and GitHub's OIDC provider) that CI assumes to push images to this environment's repositories; needs github_repository and terraform_state_bucket."
  type        = bool
  default     = true
}

variable "github_repository" {
  description = "GitHub repository (<owner>/<repo>, GitHub's spelling) whose workflows may assume the CI role; required while enable_ci_role is true."
  type        = string
  default     = null
}

variable "github_refs" {
  description = "Git refs whose jobs without a GitHub environment may assume the CI role (sub repo:<owner>/<repo>:ref:<ref>)."
  type        = list(string)
  default     = ["refs/heads/main"]
}

variable "github_environments" {
  description = "GitHub environments whose jobs may assume the CI role (sub repo:<owner>/<repo>:environment:<name>); give prod required reviewers and main as its only deployment branch."
  type        = list(string)
  default     = ["prod"]
}

variable "create_github_oidc_provider" {
  description = "Create the account's IAM OIDC provider for token.actions.githubusercontent.com; false when it exists already (one per account: dev and prod in one account create it once)."
  type        = bool
  default     = true
}

variable "terraform_state_bucket" {
  description = "The state bucket of backend.hcl, whose prod state the CI role may read (make tf-outputs); required while enable_ci_role is true."
  type        = string
  default     = null
}

variable "terraform_state_key" {
  description = "The state key of backend.hcl, the only object of the bucket the CI role may read."
  type        = string
  default     = "skinlesion/prod/terraform.tfstate"
}

variable "terraform_state_lock_table" {
  description = "The dynamodb_table of backend.hcl (the CI role reads the state checksum from it); null when the state is locked without DynamoDB."
  type        = string
  default     = "terraform-state-locks"
}

variable "terraform_state_region" {
  description = "The region of backend.hcl, when the state bucket lives outside var.region; null means var.region."
  type        = string
  default     = null
}

variable "terraform_state_kms_key_arn" {
  description = "Customer-managed KMS key of the state bucket, if it has one (the CI role may decrypt through S3 with it); null for SSE-S3 or aws/s3."
  type        = string
  default     = null
}

variable "tags" {
  description = "Extra tags on every resource (Project, Environment and ManagedBy are always set)."
  type        = map(string)
  default     = {}
}
