variable "name_prefix" {
  description = "Prefix of every resource name, e.g. \"skinlesion-dev\": lowercase letters, digits and hyphens, at most 20 characters (bucket names append purpose, account and region)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-20 characters of lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete buckets that still hold objects. Keep false for any environment whose data matters."
  type        = bool
  default     = false
}

variable "kms_deletion_window_days" {
  description = "Days a scheduled deletion of the KMS key waits before the key is gone (7-30)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

variable "key_service_principals" {
  description = "AWS service principals allowed to use the KMS key for the resources they publish to (CloudWatch alarms, EventBridge and Budgets publishing to the encrypted SNS topic)."
  type        = list(string)
  default     = ["cloudwatch.amazonaws.com", "events.amazonaws.com", "budgets.amazonaws.com"]
}

variable "intelligent_tiering_after_days" {
  description = "Days after which current object versions in the data buckets move to S3 Intelligent-Tiering (0 moves them at once)."
  type        = number
  default     = 0

  validation {
    condition     = var.intelligent_tiering_after_days >= 0
    error_message = "intelligent_tiering_after_days must be >= 0."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which noncurrent (overwritten or deleted) object versions expire in the data buckets."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be >= 1."
  }
}

variable "access_log_retention_days" {
  description = "Days S3 server access logs are kept in the logs bucket."
  type        = number
  default     = 365

  validation {
    condition     = var.access_log_retention_days >= 1
    error_message = "access_log_retention_days must be >= 1."
  }
}


variable "capture_expiration_days" {
  description = "Days after which endpoint data capture (capture bucket, data-capture/) expires; monitoring reads the recent window only."
  type        = number
  default     = 90

  validation {
    condition     = var.capture_expiration_days >= 1
    error_message = "capture_expiration_days must be >= 1."
  }
}

variable "staging_expiration_days" {
  description = "Days after which the SageMaker backend's staging copies (models bucket, staging/) expire."
  type        = number
  default     = 7

  validation {
    condition     = var.staging_expiration_days >= 1
    error_message = "staging_expiration_days must be >= 1."
  }
}

variable "checkpoint_expiration_days" {
  description = "Days after which training checkpoints (models bucket, checkpoints/) expire; a spot restart needs them only while its job runs."
  type        = number
  default     = 14

  validation {
    condition     = var.checkpoint_expiration_days >= 1
    error_message = "checkpoint_expiration_days must be >= 1."
  }
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
