# Two roles with least privilege: the SageMaker execution role that jobs and endpoints run as,
# and the IRSA role that the pipeline pods of the Kubeflow profile assume to drive SageMaker (through
# a service account of their own: notebooks of the profile run as default-editor and get nothing).

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition
  oidc_host  = trimsuffix(trimprefix(var.oidc_provider_url, "https://"), "/")

  sagemaker_arn  = "arn:${local.partition}:sagemaker:${local.region}:${local.account_id}"
  logs_arn       = "arn:${local.partition}:logs:${local.region}:${local.account_id}"
  cloudwatch_arn = "arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}"

  read_bucket_arns  = [var.bucket_arns["data"]]
  write_bucket_arns = [var.bucket_arns["processed"], var.bucket_arns["models"], var.bucket_arns["capture"]]
  all_bucket_arns   = concat(local.read_bucket_arns, local.write_bucket_arns)

  sagemaker_log_groups = [
    "${local.logs_arn}:log-group:/aws/sagemaker/*",
    "${local.logs_arn}:log-group:/aws/sagemaker/*:log-stream:*",
  ]
  metric_namespaces = ["/aws/sagemaker/*", var.metrics_namespace]

  job_arns = [
    "${local.sagemaker_arn}:training-job/${var.name_prefix}-*",
    "${local.sagemaker_arn}:processing-job/${var.name_prefix}-*",
  ]
  registry_arns = [
    "${local.sagemaker_arn}:model-package-group/${var.model_package_group_name}",
    "${local.sagemaker_arn}:model-package/${var.model_package_group_name}/*",
  ]
  serving_arns = [
    "${local.sagemaker_arn}:model/${var.name_prefix}-*",
    "${local.sagemaker_arn}:endpoint-config/${var.name_prefix}-*",
    "${local.sagemaker_arn}:endpoint/${var.name_prefix}-*",
  ]
}

# --- SageMaker execution role ----------------------------------------------------------------

data "aws_iam_policy_document" "execution_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["sagemaker.amazonaws.com"]
    }

    # Confused-deputy guard: only SageMaker acting for this account may assume the role.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "execution" {
  name                 = "${var.name_prefix}-sagemaker-execution"
  description          = "Runs ${var.name_prefix} SageMaker processing and training jobs and endpoints"
  assume_role_policy   = data.aws_iam_policy_document.execution_trust.json
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "ListDataBuckets"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = local.all_bucket_arns
  }

  statement {
    sid       = "ReadRawData"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = formatlist("%s/*", local.read_bucket_arns)
  }

  statement {
    sid = "ReadWriteWorkData"
    actions = [
      "s3:GetObject",
      "s3:GetObjectVersion",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = formatlist("%s/*", local.write_bucket_arns)
  }

  statement {
    sid = "UseDataKey"
    actions = [
      "kms:Decrypt",
      "kms:Encrypt",
      "kms:GenerateDataKey",
      "kms:ReEncryptFrom",
      "kms:ReEncryptTo",
      "kms:DescribeKey",
    ]
    resources = [var.kms_key_arn]
  }

  # SageMaker encrypts the ML storage volumes of jobs and endpoints through grants on the key.
  statement {
    sid       = "GrantDataKeyToSageMakerVolumes"
    actions   = ["kms:CreateGrant"]
    resources = [var.kms_key_arn]

    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }

  # GetAuthorizationToken has no resource to scope to.
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "PullImages"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = concat(var.ecr_repository_arns, var.external_image_repository_arns)
  }

  statement {
    sid = "WriteSageMakerLogs"
    actions = [
      "logs:CreateLogGroup",
      "logs:CreateLogStream",
      "logs:DescribeLogStreams",
      "logs:PutLogEvents",
    ]
    resources = local.sagemaker_log_groups
  }

  # PutMetricData has no resource to scope to; the namespace condition scopes it.
  statement {
    sid       = "PublishJobMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]

    condition {
      test     = "StringLike"
      variable = "cloudwatch:namespace"
      values   = local.metric_namespaces
    }
  }

  dynamic "statement" {
    for_each = var.vpc_id == null ? [] : [var.vpc_id]

    content {
      sid = "DescribeNetwork"
      actions = [
        "ec2:DescribeDhcpOptions",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcs",
      ]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = var.vpc_id == null ? [] : [var.vpc_id]

    content {
      sid = "AttachJobsToOurVpc"
      actions = [
        "ec2:CreateNetworkInterface",
        "ec2:CreateNetworkInterfacePermission",
        "ec2:DeleteNetworkInterface",
        "ec2:DeleteNetworkInterfacePermission",
      ]
      resources = ["*"]

      condition {
        test     = "ArnEquals"
        variable = "ec2:Vpc"
        values   = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:vpc/${statement.value}"]
      }
    }
  }
}

resource "aws_iam_policy" "execution" {
  name        = "${var.name_prefix}-sagemaker-execution"
  description = "Least privilege for ${var.name_prefix} SageMaker jobs and endpoints: our buckets, key, images and log groups"
  policy      = data.aws_iam_policy_document.execution.json
  tags        = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = aws_iam_policy.execution.arn
}

# --- IRSA role for the Kubeflow profile ------------------------------------------------------

data "aws_iam_policy_document" "kubeflow_trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = ["system:serviceaccount:${var.kubeflow_namespace}:${var.kubeflow_service_account}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "kubeflow" {
  name                 = "${var.name_prefix}-kubeflow-pipelines"
  description          = "Assumed by ${var.kubeflow_namespace}/${var.kubeflow_service_account} pipeline pods (IRSA) to drive SageMaker"
  assume_role_policy   = data.aws_iam_policy_document.kubeflow_trust.json
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags
}

data "aws_iam_policy_document" "kubeflow" {
  dynamic "statement" {
    for_each = var.require_job_output_kms_key ? [1] : []

    content {
      sid       = "CreateJobsWithOurKey"
      actions   = ["sagemaker:CreateTrainingJob", "sagemaker:CreateProcessingJob"]
      resources = local.job_arns

      condition {
        test     = "StringEquals"
        variable = "sagemaker:OutputKmsKey"
        values   = [var.kms_key_arn]
      }
    }
  }

  dynamic "statement" {
    for_each = var.require_job_output_kms_key ? [] : [1]

    content {
      sid       = "CreateJobs"
      actions   = ["sagemaker:CreateTrainingJob", "sagemaker:CreateProcessingJob"]
      resources = local.job_arns
    }
  }

  statement {
    sid = "FollowAndStopJobs"
    actions = [
      "sagemaker:DescribeTrainingJob",
      "sagemaker:DescribeProcessingJob",
      "sagemaker:StopTrainingJob",
      "sagemaker:StopProcessingJob",
      "sagemaker:AddTags",
      "sagemaker:ListTags",
    ]
    resources = local.job_arns
  }

  statement {
    sid = "RegisterModels"
    actions = [
      "sagemaker:CreateModelPackage",
      "sagemaker:DescribeModelPackage",
      "sagemaker:UpdateModelPackage",
      "sagemaker:DescribeModelPackageGroup",
      "sagemaker:AddTags",
      "sagemaker:ListTags",
    ]
    resources = local.registry_arns
  }

  # The human in the loop: unless pipeline_may_approve, the pipeline may register and update
  # versions but never set them Approved, on CreateModelPackage (registering as Approved) as on
  # UpdateModelPackage. sagemaker:ModelApprovalStatus is the condition key that the Service
  # Authorization Reference (list_amazonsagemaker.html, "Condition keys for Amazon SageMaker")
  # gives both actions: "Filters access by the model approval status with the model-package in
  # the request". An explicit Deny wins over every Allow, including one added to the role later;
  # it covers every package and group of this account and region, not only ours.
  dynamic "statement" {
    for_each = var.pipeline_may_approve ? [] : [1]

    content {
      sid       = "DenySelfApproval"
      effect    = "Deny"
      actions   = ["sagemaker:CreateModelPackage", "sagemaker:UpdateModelPackage"]
      resources = ["${local.sagemaker_arn}:model-package/*", "${local.sagemaker_arn}:model-package-group/*"]

      condition {
        test     = "StringEquals"
        variable = "sagemaker:ModelApprovalStatus"
        values   = ["Approved"]
      }
    }
  }

  # The Service Authorization Reference scopes ListModelPackages to model-package ARNs; list
  # calls name no single package, so this account's and region's packages are the scope.
  statement {
    sid       = "ListModelVersions"
    actions   = ["sagemaker:ListModelPackages"]
    resources = ["${local.sagemaker_arn}:model-package/*"]
  }

  statement {
    sid = "DeployEndpoints"
    actions = [
      "sagemaker:CreateModel",
      "sagemaker:DescribeModel",
      "sagemaker:DeleteModel",
      "sagemaker:CreateEndpointConfig",
      "sagemaker:DescribeEndpointConfig",
      "sagemaker:DeleteEndpointConfig",
      "sagemaker:CreateEndpoint",
      "sagemaker:UpdateEndpoint",
      "sagemaker:DescribeEndpoint",
      "sagemaker:DeleteEndpoint",
      "sagemaker:InvokeEndpoint",
      "sagemaker:AddTags",
      "sagemaker:ListTags",
    ]
    resources = local.serving_arns
  }

  # SageMaker's "Auto scaling prerequisites" (docs.aws.amazon.com/sagemaker/latest/dg/
  # endpoint-auto-scaling-prerequisites.html) lists, for whoever registers a variant as a
  # scalable target: sagemaker:DescribeEndpoint, sagemaker:DescribeEndpointConfig and
  # sagemaker:UpdateEndpointWeightsAndCapacities; application-autoscaling actions; the
  # service-linked role AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint (created with
  # iam:AWSServiceName = sagemaker.application-autoscaling.amazonaws.com); and the CloudWatch
  # alarm calls of target tracking. The two Describe calls are in DeployEndpoints; the rest below.
  statement {
    sid       = "ScaleEndpointVariants"
    actions   = ["sagemaker:UpdateEndpointWeightsAndCapacities"]
    resources = ["${local.sagemaker_arn}:endpoint/${var.name_prefix}-*"]
  }

  statement {
    sid       = "PassExecutionRoleToSageMaker"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.execution.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["sagemaker.amazonaws.com"]
    }
  }

  statement {
    sid = "ScaleEndpoints"
    actions = [
      "application-autoscaling:RegisterScalableTarget",
      "application-autoscaling:DeregisterScalableTarget",
      "application-autoscaling:PutScalingPolicy",
      "application-autoscaling:DeleteScalingPolicy",
    ]
    resources = ["arn:${local.partition}:application-autoscaling:${local.region}:${local.account_id}:scalable-target/*"]
  }

  # Describe calls of Application Auto Scaling have no resource to scope to.
  statement {
    sid = "DescribeScaling"
    actions = [
      "application-autoscaling:DescribeScalableTargets",
      "application-autoscaling:DescribeScalingPolicies",
      "application-autoscaling:DescribeScalingActivities",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "CreateEndpointScalingServiceRole"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = ["arn:${local.partition}:iam::${local.account_id}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"]

    condition {
      test     = "StringEquals"
      variable = "iam:AWSServiceName"
      values   = ["sagemaker.application-autoscaling.amazonaws.com"]
    }
  }

  # Target tracking creates and deletes its alarms in the caller's name.
  statement {
    sid       = "ManageScalingAlarms"
    actions   = ["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"]
    resources = ["${local.cloudwatch_arn}:alarm:TargetTracking-endpoint/${var.name_prefix}-*"]
  }

  # The deploy step lists the alarms on its endpoint's metrics to roll a blue/green update back;
  # a listing names no alarm, so it is scoped to this account and region.
  statement {
    sid       = "ReadAlarms"
    actions   = ["cloudwatch:DescribeAlarms"]
    resources = ["${local.cloudwatch_arn}:alarm:*"]
  }

  statement {
    sid       = "PublishMonitoringMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }

  statement {
    sid = "StreamJobLogs"
    actions = [
      "logs:DescribeLogStreams",
      "logs:GetLogEvents",
      "logs:FilterLogEvents",
    ]
    resources = local.sagemaker_log_groups
  }

  statement {
    sid       = "ListDataBuckets"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = local.all_bucket_arns
  }

  statement {
    sid       = "ReadRawData"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = formatlist("%s/*", local.read_bucket_arns)
  }

  statement {
    sid = "ReadWritePipelineArtifacts"
    actions = [
      "s3:GetObject",
      "s3:GetObjectVersion",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = formatlist("%s/*", local.write_bucket_arns)
  }

  statement {
    sid       = "UseDataKey"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [var.kms_key_arn]
  }

  statement {
    sid       = "GrantDataKeyToSageMakerResources"
    actions   = ["kms:CreateGrant"]
    resources = [var.kms_key_arn]

    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }

  statement {
    sid       = "NotifyAlertsTopic"
    actions   = ["sns:Publish"]
    resources = [var.sns_topic_arn]
  }
}

resource "aws_iam_policy" "kubeflow" {
  name        = "${var.name_prefix}-kubeflow-pipelines"
  description = "Least privilege for ${var.name_prefix} pipeline pods: our SageMaker jobs, registry, endpoints, buckets and key"
  policy      = data.aws_iam_policy_document.kubeflow.json
  tags        = var.tags
}

resource "aws_iam_role_policy_attachment" "kubeflow" {
  role       = aws_iam_role.kubeflow.name
  policy_arn = aws_iam_policy.kubeflow.arn
}
