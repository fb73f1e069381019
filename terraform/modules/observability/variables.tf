variable "name_prefix" {
  description = "Prefix of every resource name, e.g. \"skinlesion-dev\"; SageMaker jobs whose names start with \"<name_prefix>-\" are watched."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-20 characters of lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the SNS topic."
  type        = string
}

variable "endpoint_name" {
  description = "Name of the SageMaker real-time endpoint the alarms and dashboard watch (the deploy step creates it under this name)."
  type        = string
}

variable "endpoint_variant_name" {
  description = "Production variant of the endpoint that the alarms watch."
  type        = string
  default     = "AllTraffic"
}

variable "model_package_group_name" {
  description = "Model package group whose approvals are announced on the SNS topic."
  type        = string
}

variable "alert_emails" {
  description = "E-mail addresses subscribed to the alerts topic (each must confirm the subscription)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for email in var.alert_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", email))])
    error_message = "alert_emails must hold e-mail addresses (name@domain.tld)."
  }
}

variable "endpoint_5xx_threshold" {
  description = "The 5xx alarm fires when the endpoint answers more than this many 5xx errors per minute in 2 of 3 minutes."
  type        = number
  default     = 0

  validation {
    condition     = var.endpoint_5xx_threshold >= 0
    error_message = "endpoint_5xx_threshold must be >= 0."
  }
}

variable "latency_p99_threshold_ms" {
  description = "The latency alarm fires when the p99 model latency exceeds this many milliseconds in 3 of 5 minutes."
  type        = number
  default     = 500

  validation {
    condition     = var.latency_p99_threshold_ms > 0
    error_message = "latency_p99_threshold_ms must be > 0."
  }
}

variable "monthly_budget_usd" {
  description = "Monthly cost budget of the account in US dollars; alerts go to the SNS topic."
  type        = number
  default     = 300

  validation {
    condition     = var.monthly_budget_usd > 0
    error_message = "monthly_budget_usd must be > 0."
  }
}

variable "budget_alert_thresholds_percent" {
  description = "Budget alerts: percentages of monthly_budget_usd at which actual spend alerts (forecast alerts at 100%)."
  type        = list(number)
  default     = [80, 100]

  validation {
    condition     = length(var.budget_alert_thresholds_percent) > 0 && alltrue([for p in var.budget_alert_thresholds_percent : p > 0])
    error_message = "budget_alert_thresholds_percent must hold at least one positive percentage."
  }
}

variable "enable_budget" {
  description = "Create the AWS Budgets cost alert."
  type        = bool
  default     = true
}

variable "cost_allocation_tag_key" {
  description = "Key of the cost-allocation tag the budget counts (activated in Billing, Cost allocation tags); every resource of the environment carries it."
  type        = string
  default     = "skinlesion:prefix"

  validation {
    condition     = length(var.cost_allocation_tag_key) > 0 && !startswith(var.cost_allocation_tag_key, "user:")
    error_message = "cost_allocation_tag_key must be the tag key itself (e.g. skinlesion:prefix), without the user: prefix that the budget filter adds."
  }
}

variable "cost_allocation_tag_value" {
  description = "Value of the cost-allocation tag the budget counts, e.g. the name prefix skinlesion-dev."
  type        = string

  validation {
    condition     = length(var.cost_allocation_tag_value) > 0 && !strcontains(var.cost_allocation_tag_value, "$")
    error_message = "cost_allocation_tag_value must be a non-empty tag value without \"$\" (the budget filter's separator)."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch Logs keeps the SageMaker job and endpoint logs (a value CloudWatch accepts: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of CloudWatch Logs' values: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  }
}

variable "manage_shared_sagemaker_log_groups" {
  description = "Create /aws/sagemaker/TrainingJobs and /aws/sagemaker/ProcessingJobs, which every SageMaker job of the account and region shares; true in exactly one environment per account and region."
  type        = bool
  default     = true
}


variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
