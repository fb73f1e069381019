# The role that the CI workflow's publish job (.github/workflows/ci.yml) assumes through GitHub's
# OIDC token: no AWS key is stored in GitHub. It may read this environment's Terraform state (the
# job runs `make tf-outputs`) and push to the three image repositories, nothing else.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  github_host = "token.actions.githubusercontent.com"
  # An account has at most one IAM OIDC provider per issuer URL, so its ARN follows from the URL.
  github_provider_arn = "arn:${local.partition}:iam::${local.account_id}:oidc-provider/${local.github_host}"

  # GitHub's `sub` claim: `repo:<owner>/<repo>:ref:<ref>` for a job without an environment,
  # `repo:<owner>/<repo>:environment:<name>` for a job that names one (the publish job runs in
  # the `dev` environment).
  subjects = concat(
    formatlist("repo:%s:ref:%s", var.github_repository, var.github_refs),
    formatlist("repo:%s:environment:%s", var.github_repository, var.github_environments),
  )

  state_bucket_arn = "arn:${local.partition}:s3:::${var.terraform_state_bucket}"
  state_region     = coalesce(var.terraform_state_region, data.aws_region.current.name)
}

# --- GitHub's OIDC provider ------------------------------------------------------------------

# No thumbprint: IAM trusts GitHub's issuer through its own library of root CAs, and the AWS API
# fills in a thumbprint itself when none is given.
resource "aws_iam_openid_connect_provider" "github" {
  count = var.create_github_oidc_provider ? 1 : 0

  url            = "https://${local.github_host}"
  client_id_list = ["sts.amazonaws.com"]
  tags           = var.tags
}

# The provider that another stack (or another environment in this account) created.
data "aws_iam_openid_connect_provider" "github" {
  count = var.create_github_oidc_provider ? 0 : 1

  url = "https://${local.github_host}"

  lifecycle {
    postcondition {
      condition     = contains(self.client_id_list, "sts.amazonaws.com")
      error_message = "The existing OIDC provider for ${local.github_host} does not list the audience sts.amazonaws.com, which aws-actions/configure-aws-credentials requests; add it to the provider's client IDs."
    }
  }
}

# --- Role ------------------------------------------------------------------------------------

data "aws_iam_policy_document" "trust" {
  #checkov:skip=CKV_AWS_358:checkov cannot evaluate the computed sub list and then reports it unrestricted; it is StringEquals on exact repo:<owner>/<repo>:ref:<ref> and :environment:<name> subjects, the variables refuse wildcards, and tests/terraform reads the applied trust policy.
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.github_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.github_host}:aud"
      values   = ["sts.amazonaws.com"]
    }

    # Exact subjects only (StringEquals, no wildcards): this repository's allowed refs and
    # environments, so no fork, other repository, branch or pull request can assume the role.
    condition {
      test     = "StringEquals"
      variable = "${local.github_host}:sub"
      values   = local.subjects
    }
  }
}

resource "aws_iam_role" "this" {
  name                 = "${var.name_prefix}-github-actions"
  description          = "Assumed by the CI publish job of ${var.github_repository} (GitHub OIDC) to push ${var.name_prefix} images"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = var.max_session_duration
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags

  # IAM rejects a trust policy whose federated principal does not exist yet.
  depends_on = [aws_iam_openid_connect_provider.github, data.aws_iam_openid_connect_provider.github]

  lifecycle {
    precondition {
      condition     = length(local.subjects) > 0
      error_message = "github_refs and github_environments are both empty, so no workflow could assume the role; allow at least one ref (e.g. refs/heads/main) or environment (e.g. dev)."
    }
  }
}

data "aws_iam_policy_document" "this" {
  # GetAuthorizationToken has no resource to scope to.
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  # What `docker push` needs, on our repositories only. The repositories' KMS key needs no grant
  # here: ECR encrypts and decrypts layers through the grants it took when the repositories were
  # created, not with the caller's permissions.
  statement {
    sid = "PushImages"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:CompleteLayerUpload",
      "ecr:InitiateLayerUpload",
      "ecr:PutImage",
      "ecr:UploadLayerPart",
    ]
    resources = var.ecr_repository_arns
  }

  # `make tf-init tf-outputs`: the S3 backend lists the bucket (workspaces) and reads the state
  # object; it writes nothing.
  statement {
    sid       = "ListStateBucket"
    actions   = ["s3:ListBucket"]
    resources = [local.state_bucket_arn]
  }

  statement {
    sid       = "ReadState"
    actions   = ["s3:GetObject"]
    resources = ["${local.state_bucket_arn}/${var.terraform_state_key}"]
  }

  # With DynamoDB locking the backend also reads the state's checksum from the table.
  dynamic "statement" {
    for_each = var.terraform_state_lock_table == null ? [] : [var.terraform_state_lock_table]

    content {
      sid       = "ReadStateChecksum"
      actions   = ["dynamodb:DescribeTable", "dynamodb:GetItem"]
      resources = ["arn:${local.partition}:dynamodb:${local.state_region}:${local.account_id}:table/${statement.value}"]
    }
  }

  # Only when the state bucket encrypts with a customer-managed key (an AWS-managed aws/s3 key
  # lets every principal of the account that may read the object decrypt it through S3).
  dynamic "statement" {
    for_each = var.terraform_state_kms_key_arn == null ? [] : [var.terraform_state_kms_key_arn]

    content {
      sid       = "DecryptStateThroughS3"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["s3.${local.state_region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_policy" "this" {
  name        = "${var.name_prefix}-github-actions"
  description = "Least privilege for the ${var.name_prefix} CI publish job: push to our image repositories, read the Terraform state"
  policy      = data.aws_iam_policy_document.this.json
  tags        = var.tags
}

resource "aws_iam_role_policy_attachment" "this" {
  role       = aws_iam_role.this.name
  policy_arn = aws_iam_policy.this.arn
}
