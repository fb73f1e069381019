variable "name_prefix" {
  description = "Prefix of every resource name, e.g. \"skinlesion-dev\"; the role is \"<name_prefix>-github-actions\"."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-20 characters of lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "github_repository" {
  description = "GitHub repository whose workflows may assume the role, as <owner>/<repo> with GitHub's spelling (the sub claim is compared case-sensitively), e.g. my-org/skinlesion."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$", var.github_repository))
    error_message = "github_repository must be <owner>/<repo>, e.g. my-org/skinlesion, without wildcards; set it, or set enable_ci_role = false to leave the CI role out."
  }
}

variable "github_refs" {
  description = "Git refs whose jobs may assume the role when they name no GitHub environment (sub repo:<owner>/<repo>:ref:<ref>), e.g. refs/heads/main."
  type        = list(string)
  default     = ["refs/heads/main"]

  validation {
    condition     = alltrue([for ref in var.github_refs : can(regex("^refs/(heads|tags)/[^*?]+$", ref))])
    error_message = "github_refs must be full refs without wildcards, e.g. refs/heads/main or refs/tags/v1.0.0."
  }
}

variable "github_environments" {
  description = "GitHub environments whose jobs may assume the role (sub repo:<owner>/<repo>:environment:<name>); a job that names an environment presents this subject instead of its ref."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for name in var.github_environments : can(regex("^[^*?:]+$", name))])
    error_message = "github_environments must be environment names without wildcards or colons, e.g. dev."
  }
}

variable "create_github_oidc_provider" {
  description = "Create the account's IAM OIDC provider for token.actions.githubusercontent.com; false uses the one that already exists (an account holds at most one per URL, e.g. when dev and prod share an account)."
  type        = bool
  default     = true
}

variable "ecr_repository_arns" {
  description = "ARNs of the image repositories the role may push to."
  type        = list(string)

  validation {
    condition     = length(var.ecr_repository_arns) > 0 && alltrue([for arn in var.ecr_repository_arns : can(regex("^arn:aws[a-z-]*:ecr:[a-z0-9-]+:[0-9]{12}:repository/[^*]+$", arn))])
    error_message = "ecr_repository_arns must list at least one repository ARN, without wildcards."
  }
}

variable "terraform_state_bucket" {
  description = "S3 bucket of the Terraform state (bucket in backend.hcl); the publish job reads this environment's outputs from it."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.terraform_state_bucket))
    error_message = "terraform_state_bucket must be the S3 bucket name of backend.hcl (3-63 lowercase letters, digits, dots and hyphens); set it, or set enable_ci_role = false to leave the CI role out."
  }
}

variable "terraform_state_key" {
  description = "Key of this environment's state object in the bucket (key in backend.hcl), e.g. skinlesion/dev/terraform.tfstate."
  type        = string

  validation {
    condition     = can(regex("^[^*?]+$", var.terraform_state_key))
    error_message = "terraform_state_key must be the object key of backend.hcl, without wildcards."
  }
}

variable "terraform_state_lock_table" {
  description = "DynamoDB lock table of the state (dynamodb_table in backend.hcl), whose checksum entry the backend reads; null when the state is locked without DynamoDB."
  type        = string
  default     = null
}

variable "terraform_state_region" {
  description = "Region of the state bucket and lock table; null means the provider's region."
  type        = string
  default     = null
}

variable "terraform_state_kms_key_arn" {
  description = "Customer-managed KMS key that encrypts the state bucket, if any; null for SSE-S3 or the AWS-managed aws/s3 key, which need no grant."
  type        = string
  default     = null
}

variable "max_session_duration" {
  description = "Longest session, in seconds, that the workflow may request (role-duration-seconds of aws-actions/configure-aws-credentials, which asks for 3600 by default)."
  type        = number
  default     = 3600

  validation {
    condition     = var.max_session_duration >= 3600 && var.max_session_duration <= 43200
    error_message = "max_session_duration must be between 3600 and 43200 seconds."
  }
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary set on the role, when the organisation requires one."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
