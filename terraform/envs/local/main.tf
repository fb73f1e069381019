# The same platform as dev and prod, applied to a moto server: every AWS endpoint points at it.

provider "aws" {
  region     = var.region
  access_key = "test"
  secret_key = "test"

  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  s3_use_path_style           = true
  # moto answers calls it does not implement with errors that the SDK retries for minutes.
  max_retries = 1

  endpoints {
    budgets    = var.moto_endpoint
    cloudwatch = var.moto_endpoint
    ecr        = var.moto_endpoint
    events     = var.moto_endpoint
    iam        = var.moto_endpoint
    kms        = var.moto_endpoint
    logs       = var.moto_endpoint
    s3         = var.moto_endpoint
    sagemaker  = var.moto_endpoint
    sns        = var.moto_endpoint
    sts        = var.moto_endpoint
  }

  default_tags {
    tags = {
      Project     = "skinlesion"
      Environment = "local"
      ManagedBy   = "terraform"
      # The cost-allocation tag of the budget (which moto cannot serve, so local has none).
      "skinlesion:prefix" = var.name_prefix
    }
  }
}

# An EKS cluster's OIDC provider, so the IRSA role has a real federated principal to trust.
resource "aws_iam_openid_connect_provider" "eks" {
  url             = "https://oidc.eks.${var.region}.amazonaws.com/id/LOCALMOTOCLUSTER"
  client_id_list  = ["sts.amazonaws.com"]
  thumbprint_list = ["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"]
}

module "platform" {
  source = "../../modules/platform"

  name_prefix        = var.name_prefix
  force_destroy      = true
  oidc_provider_arn  = aws_iam_openid_connect_provider.eks.arn
  oidc_provider_url  = aws_iam_openid_connect_provider.eks.url
  kubeflow_namespace = var.kubeflow_namespace

  kms_deletion_window_days   = 7
  enable_budget              = var.enable_unsupported_in_moto
  enable_model_package_group = var.enable_unsupported_in_moto

  # The CI role and GitHub's OIDC provider, as dev creates them (moto serves both). The state here
  # is a local file; the bucket and table name what the role would read on AWS.
  github_repository          = var.github_repository
  github_environments        = ["local"]
  terraform_state_bucket     = "${var.name_prefix}-terraform-state"
  terraform_state_key        = "skinlesion/local/terraform.tfstate"
  terraform_state_lock_table = "terraform-state-locks"
}
