# The data lake: raw data, processed data, models (also the KFP pipeline root) and data capture,
# encrypted with one customer-managed KMS key; a logs bucket receives their S3 access logs.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  # Key: the module's name for a bucket (and its output); value: the purpose in the bucket name.
  data_buckets = {
    data      = "raw"
    processed = "processed"
    models    = "models"
    capture   = "capture"
  }

  # Prefixes whose objects are working copies, expired after their variable's days: endpoint
  # data capture, the SageMaker backend's staging area and training checkpoints (skinlesion
  # settings: capture_uri, staging_root, checkpoint_root). Keyed by data bucket, then prefix.
  prefix_expiration_days = {
    capture = { "data-capture/" = var.capture_expiration_days }
    models  = { "staging/" = var.staging_expiration_days, "checkpoints/" = var.checkpoint_expiration_days }
  }

  bucket_names = { for key, purpose in local.data_buckets : key => "${var.name_prefix}-${purpose}-${local.account_id}-${local.region}" }
  logs_bucket  = "${var.name_prefix}-logs-${local.account_id}-${local.region}"
}

# --- KMS -------------------------------------------------------------------------------------

data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_109:A KMS key policy names its own key as Resource "*"; administration is limited to this account's root, whose IAM policies then decide.
  #checkov:skip=CKV_AWS_111:A KMS key policy names its own key as Resource "*"; only this account and the listed AWS services are principals.
  #checkov:skip=CKV_AWS_356:In a KMS key policy Resource "*" means this key only, not every resource.
  # The account root administers the key; IAM policies (the roles in the identity module) then
  # grant use of it, so no principal outside this account is named here.
  statement {
    sid       = "AccountAdministersKey"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  dynamic "statement" {
    for_each = length(var.key_service_principals) > 0 ? [1] : []

    content {
      sid       = "ServicesPublishToEncryptedTopic"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = var.key_service_principals
      }
    }
  }

  # CloudWatch Logs encrypts the SageMaker log groups (observability module) with this key; the
  # encryption context names the log group, so only /aws/sagemaker/* groups of this account.
  statement {
    sid = "CloudWatchLogsEncryptSageMakerLogs"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/sagemaker/*"]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "${var.name_prefix}: data lake, ECR images, SageMaker volumes, outputs and logs, SNS"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.key.json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name_prefix}"
  target_key_id = aws_kms_key.this.key_id
}

# --- Data buckets (KMS) ----------------------------------------------------------------------

resource "aws_s3_bucket" "data" {
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles storage cost; the data is reproducible from its source and versioning protects against deletion.
  #checkov:skip=CKV2_AWS_62:No consumer of S3 event notifications: the pipeline is started by Kubeflow schedules.
  for_each = local.bucket_names

  bucket        = each.value
  force_destroy = var.force_destroy
  tags          = merge(var.tags, { Purpose = local.data_buckets[each.key] })
}

resource "aws_s3_bucket_ownership_controls" "data" {
  for_each = aws_s3_bucket.data

  bucket = each.value.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  for_each = aws_s3_bucket.data

  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "data" {
  for_each = aws_s3_bucket.data

  bucket = each.value.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  for_each = aws_s3_bucket.data

  bucket = each.value.id

  rule {
    bucket_key_enabled = true

    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this.arn
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  for_each = aws_s3_bucket.data

  bucket = each.value.id

  rule {
    id     = "intelligent-tiering-and-noncurrent-expiry"
    status = "Enabled"

    filter {
      prefix = ""
    }

    transition {
      days          = var.intelligent_tiering_after_days
      storage_class = "INTELLIGENT_TIERING"
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Expiry makes the current version noncurrent (versioning is on); the rule above then removes
  # it after noncurrent_version_expiration_days.
  dynamic "rule" {
    for_each = lookup(local.prefix_expiration_days, each.key, {})

    content {
      id     = "expire-${trimsuffix(rule.key, "/")}"
      status = "Enabled"

      filter {
        prefix = rule.key
      }

      expiration {
        days = rule.value
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.data]
}

resource "aws_s3_bucket_logging" "data" {
  for_each = aws_s3_bucket.data

  bucket        = each.value.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3/${each.value.id}/"

  depends_on = [aws_s3_bucket_policy.logs]
}

data "aws_iam_policy_document" "data" {
  for_each = aws_s3_bucket.data

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      each.value.arn,
      "${each.value.arn}/*",
    ]

    # {"AWS": "*"} means the same as "*" and is what moto's logging-permission check can parse.
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  for_each = aws_s3_bucket.data

  bucket = each.value.id
  policy = data.aws_iam_policy_document.data[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.data]
}

# --- Logs bucket (SSE-S3: S3 server access logging cannot write to SSE-KMS buckets) ----------

resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_18:This is the access-log destination; logging it to itself would log its own log deliveries in a loop.
  #checkov:skip=CKV_AWS_144:Access logs are kept for audit in one region; replicating them is not required.
  #checkov:skip=CKV_AWS_145:S3 server access logging only delivers to buckets encrypted with SSE-S3, not SSE-KMS.
  #checkov:skip=CKV2_AWS_62:Nothing consumes events for new access-log objects.
  bucket        = local.logs_bucket
  force_destroy = var.force_destroy
  tags          = merge(var.tags, { Purpose = "logs" })
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"

    filter {
      prefix = ""
    }

    expiration {
      days = var.access_log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.logs]
}

data "aws_iam_policy_document" "logs" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.logs.arn,
      "${aws_s3_bucket.logs.arn}/*",
    ]

    # {"AWS": "*"} means the same as "*" and is what moto's logging-permission check can parse.
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "S3ServerAccessLogsFromOurBuckets"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/*"]

    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = formatlist("arn:${local.partition}:s3:::%s", values(local.bucket_names))
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = data.aws_iam_policy_document.logs.json

  depends_on = [aws_s3_bucket_public_access_block.logs]
}
