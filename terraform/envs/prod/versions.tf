terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # Remote state in S3 with DynamoDB locking; the settings come from
  # `terraform init -backend-config=backend.hcl` (see backend.hcl.example and docs/aws.md).
  backend "s3" {}
}
