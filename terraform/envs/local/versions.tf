terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # Local state; `make tf-local-up` puts it under build/ with -backend-config=path=...
  backend "local" {}
}
