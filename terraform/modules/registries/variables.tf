variable "name_prefix" {
  description = "Prefix of every resource name, e.g. \"skinlesion-dev\" (lowercase: SageMaker lowercases ARNs)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-20 characters of lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the image repositories."
  type        = string
}

variable "repositories" {
  description = "Image repositories to create, by role; each becomes <name_prefix>/<role>."
  type        = set(string)
  default     = ["training", "inference", "pipeline"]
}

variable "untagged_image_expiry_days" {
  description = "Days after which untagged images (layers of superseded pushes) are deleted."
  type        = number
  default     = 14

  validation {
    condition     = var.untagged_image_expiry_days >= 1
    error_message = "untagged_image_expiry_days must be >= 1."
  }
}

variable "max_tagged_images" {
  description = "Most images kept per repository; older ones are deleted (the model registry records the image digest each version needs)."
  type        = number
  default     = 100

  validation {
    condition     = var.max_tagged_images >= 1
    error_message = "max_tagged_images must be >= 1."
  }
}

variable "force_delete" {
  description = "Let `terraform destroy` delete repositories that still hold images."
  type        = bool
  default     = false
}


variable "enable_model_package_group" {
  description = "Create the SageMaker model package group (the model registry)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
