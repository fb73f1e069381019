variable "name_prefix" {
  description = "Prefix of every resource name, e.g. \"skinlesion-dev\". The Kubeflow role may only touch SageMaker jobs, models and endpoints named \"<name_prefix>-*\" (lowercase: SageMaker lowercases its ARNs)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-20 characters of lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key of the data lake, the image repositories and the SNS topic."
  type        = string
}

variable "bucket_arns" {
  description = "Data bucket ARNs by role; must hold the keys data (raw, read-only for jobs), processed, models and capture."
  type        = map(string)

  validation {
    condition     = length(setsubtract(["data", "processed", "models", "capture"], keys(var.bucket_arns))) == 0
    error_message = "bucket_arns must hold the keys data, processed, models and capture."
  }
}

variable "ecr_repository_arns" {
  description = "ARNs of the image repositories that SageMaker pulls the training, processing and inference images from."
  type        = list(string)
}

variable "external_image_repository_arns" {
  description = "Further repository ARNs the execution role may pull from, e.g. arn:aws:ecr:<region>:763104351884:repository/pytorch-training for AWS Deep Learning Containers."
  type        = list(string)
  default     = []
}

variable "model_package_group_name" {
  description = "Model package group (model registry) that the Kubeflow role registers versions in."
  type        = string
}

variable "sns_topic_arn" {
  description = "Alerts topic the Kubeflow role may publish to (monitoring notifications)."
  type        = string
}

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider, e.g. arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+$", var.oidc_provider_arn))
    error_message = "oidc_provider_arn must look like arn:aws:iam::<account>:oidc-provider/<issuer host and path>."
  }
}

variable "oidc_provider_url" {
  description = "Issuer URL of the EKS cluster's OIDC provider, with or without https://, e.g. oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE."
  type        = string

  validation {
    condition     = length(trimprefix(var.oidc_provider_url, "https://")) > 0
    error_message = "oidc_provider_url must not be empty."
  }
}

variable "kubeflow_namespace" {
  description = "Kubernetes namespace of the Kubeflow profile whose pipeline pods assume the IRSA role."
  type        = string
}

variable "kubeflow_service_account" {
  description = "Service account (in kubeflow_namespace) that pipeline pods run as and that alone may assume the IRSA role; not default-editor, which the profile's notebooks share."
  type        = string
  default     = "skinlesion-pipeline-runner"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.kubeflow_service_account)) && var.kubeflow_service_account != "default-editor"
    error_message = "kubeflow_service_account must be a Kubernetes name (lowercase letters, digits, hyphens) other than default-editor, which every notebook of the profile runs as."
  }
}

variable "pipeline_may_approve" {
  description = "Let the pipeline role set ModelApprovalStatus=Approved (auto-approval, dev only). false adds an explicit Deny, so only a person (another principal) approves a model version."
  type        = bool
  default     = false
}

variable "metrics_namespace" {
  description = "CloudWatch namespace (besides /aws/sagemaker/*) that jobs and pipeline steps may publish metrics to (monitoring drift metrics)."
  type        = string
  default     = "SkinLesion"
}

variable "require_job_output_kms_key" {
  description = "Only allow CreateTrainingJob/CreateProcessingJob requests whose output KMS key is kms_key_arn, so no job writes unencrypted outputs."
  type        = bool
  default     = true
}

variable "vpc_id" {
  description = "VPC whose subnets SageMaker jobs and endpoints run in; null when they run without a VPC configuration."
  type        = string
  default     = null
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary set on both roles, when the organisation requires one."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
