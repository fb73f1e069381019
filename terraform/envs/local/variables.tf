variable "moto_endpoint" {
  description = "URL of the moto server that stands in for every AWS service, e.g. http://127.0.0.1:5000."
  type        = string
  default     = "http://127.0.0.1:5000"

  validation {
    condition     = can(regex("^https?://[^/]+$", var.moto_endpoint))
    error_message = "moto_endpoint must be a URL without a path, e.g. http://127.0.0.1:5000."
  }
}

variable "region" {
  description = "Region the emulated resources live in."
  type        = string
  default     = "us-east-1"
}

variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
  default     = "skinlesion-local"
}

variable "kubeflow_namespace" {
  description = "Namespace of the Kubeflow profile that the IRSA role trusts."
  type        = string
  default     = "skinlesion-local"
}

variable "github_repository" {
  description = "GitHub repository (<owner>/<repo>) that the emulated CI role trusts."
  type        = string
  default     = "example-org/skinlesion"
}

variable "enable_unsupported_in_moto" {
  description = "Create the resources that moto's server cannot serve (see docs/aws.md); false against moto, true only to show that they fail there."
  type        = bool
  default     = false
}
