"""envs/local applied to and destroyed from a moto server, checked with boto3 in between; envs/dev
planned against the same server through its S3 backend with DynamoDB locking.

moto stands in for AWS here: it stores what Terraform creates and answers the reads, so these
tests prove that the modules apply, wire up and tear down cleanly and that the settings are the
intended ones. It does not enforce IAM, so the policies' effect is checked by reading them.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.terraform.helpers import REPO_ROOT, Make

from skinlesion.settings import Settings

pytestmark = [pytest.mark.terraform, pytest.mark.aws, pytest.mark.slow]

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
NAME_PREFIX = "skinlesion-local"
NAMESPACE = "skinlesion-local"
GITHUB_ISSUER = "token.actions.githubusercontent.com"
GITHUB_REPOSITORY = "example-org/skinlesion"  # envs/local's default
# The pipeline's own service account; default-editor (every notebook of the profile) gets nothing.
PIPELINE_SERVICE_ACCOUNT = "skinlesion-pipeline-runner"
# What SageMaker's "Auto scaling prerequisites" page lists for whoever registers a variant as a
# scalable target (docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-prerequisites.html).
AUTOSCALING_PREREQUISITES = {
    "sagemaker:DescribeEndpoint",
    "sagemaker:DescribeEndpointConfig",
    "sagemaker:UpdateEndpointWeightsAndCapacities",
    "application-autoscaling:RegisterScalableTarget",
    "application-autoscaling:PutScalingPolicy",
    "iam:CreateServiceLinkedRole",
    "cloudwatch:PutMetricAlarm",
    "cloudwatch:DescribeAlarms",
    "cloudwatch:DeleteAlarms",
}
SCALING_SERVICE_LINKED_ROLE = (
    f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)
# Prefix expiry by bucket output (storage module defaults), as S3 reads them back.
PREFIX_EXPIRY_DAYS = {
    "data_bucket": {},
    "processed_bucket": {},
    "models_bucket": {"staging/": 7, "checkpoints/": 14},
    "capture_bucket": {"data-capture/": 90},
}
# What `docker push` needs, per ECR's documentation; nothing that deletes or reconfigures.
ECR_PUSH_ACTIONS = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
]
# Actions that AWS cannot scope to a resource; any other Allow must name its resources.
UNSCOPED_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingPolicies",
    "application-autoscaling:DescribeScalingActivities",
}


def client(service: str, endpoint: str) -> Any:
    """A boto3 client of the moto server."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def applied(
    make: Make, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """`make tf-local-up`, then `make tf-outputs ENV=local`; `make tf-local-down` afterwards."""
    work = tmp_path_factory.mktemp("local")
    variables = (f"MOTO_ENDPOINT={moto_endpoint}", f"TF_LOCAL_STATE={work / 'local.tfstate'}")
    outputs_file = work / "outputs.json"
    state: dict[str, Any] = {"variables": variables, "destroyed": False}
    try:
        make("tf-local-up", *variables, timeout=600)
        make("tf-outputs", "ENV=local", f"TF_OUTPUTS={outputs_file}", *variables)
        raw = json.loads(outputs_file.read_text())
        state.update(outputs={k: v["value"] for k, v in raw.items()}, file=outputs_file)
        yield state
    finally:
        if not state["destroyed"]:
            make("tf-local-down", *variables, timeout=600)


@pytest.fixture(scope="module")
def outputs(applied: dict[str, Any]) -> dict[str, Any]:
    return applied["outputs"]


def test_outputs_are_the_settings(outputs: dict[str, Any]) -> None:
    assert outputs["region"] == REGION
    assert outputs["name_prefix"] == NAME_PREFIX
    assert outputs["pipeline_root"] == f"s3://{outputs['models_bucket']}/pipeline-root"
    assert outputs["capture_uri"] == f"s3://{outputs['capture_bucket']}/data-capture"
    for name in ("data_bucket", "processed_bucket", "models_bucket", "capture_bucket"):
        assert outputs[name].startswith(f"{NAME_PREFIX}-") and outputs[name].endswith(
            f"-{ACCOUNT}-{REGION}"
        )
    for image in ("training", "inference", "pipeline"):
        assert outputs[f"{image}_image_repository_url"] == (
            f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{NAME_PREFIX}/{image}"
        )
    assert outputs["model_package_group_name"] == f"{NAME_PREFIX}-classifier"
    assert outputs["kubeflow_namespace"] == NAMESPACE
    assert outputs["kubeflow_service_account"] == PIPELINE_SERVICE_ACCOUNT
    assert outputs["endpoint_name"].startswith(f"{NAME_PREFIX}-")
    assert outputs["subnet_ids"] == [] and outputs["security_group_ids"] == []


def test_outputs_load_into_skinlesion_settings(applied: dict[str, Any]) -> None:
    settings = Settings.from_environment({"SKINLESION_TERRAFORM_OUTPUTS": str(applied["file"])})
    outputs = applied["outputs"]
    for name in (
        "region",
        "name_prefix",
        "models_bucket",
        "pipeline_root",
        "capture_uri",
        "kms_key_arn",
        "sagemaker_execution_role_arn",
        "training_image_repository_url",
        "model_package_group_name",
        "sns_topic_arn",
    ):
        assert getattr(settings, name) == outputs[name], name


def test_key_is_customer_managed_with_rotation(outputs: dict[str, Any], moto_endpoint: str) -> None:
    kms = client("kms", moto_endpoint)
    key = kms.describe_key(KeyId=outputs["kms_key_arn"])["KeyMetadata"]
    assert key["KeyManager"] == "CUSTOMER" and key["KeyState"] == "Enabled"
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True
    policy = json.loads(kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"])
    for statement in policy["Statement"]:
        assert statement["Principal"] != "*" and statement["Principal"].get("AWS") != "*"
    aliases = kms.list_aliases(KeyId=key["KeyId"])["Aliases"]
    assert [a["AliasName"] for a in aliases] == [f"alias/{NAME_PREFIX}"]


@pytest.mark.parametrize(
    "bucket", ["data_bucket", "processed_bucket", "models_bucket", "capture_bucket"]
)
def test_data_buckets_are_locked_down(
    outputs: dict[str, Any], moto_endpoint: str, bucket: str
) -> None:
    s3 = client("s3", moto_endpoint)
    name = outputs[bucket]
    rule = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": outputs["kms_key_arn"],
    }
    assert rule["BucketKeyEnabled"] is True
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    ownership = s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"]
    assert ownership == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert_tls_only(json.loads(s3.get_bucket_policy(Bucket=name)["Policy"]), name)
    logging = s3.get_bucket_logging(Bucket=name)["LoggingEnabled"]
    assert logging == {"TargetBucket": outputs["logs_bucket"], "TargetPrefix": f"s3/{name}/"}
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]}
    lifecycle = rules.pop("intelligent-tiering-and-noncurrent-expiry")
    assert lifecycle["Status"] == "Enabled"
    assert lifecycle["Transitions"] == [{"Days": 0, "StorageClass": "INTELLIGENT_TIERING"}]
    assert lifecycle["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90
    assert lifecycle["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    # Working copies expire by prefix: capture, staging and checkpoints; raw and processed never.
    expiring = {}
    for rule in rules.values():
        assert rule["Status"] == "Enabled"
        assert rule["ID"] == f"expire-{rule['Filter']['Prefix'].rstrip('/')}"
        assert set(rule) - {"ResponseMetadata"} == {"ID", "Status", "Filter", "Expiration"}, rule
        expiring[rule["Filter"]["Prefix"]] = rule["Expiration"]["Days"]
    assert expiring == PREFIX_EXPIRY_DAYS[bucket]


def assert_tls_only(policy: dict[str, Any], bucket: str) -> None:
    """The policy denies every S3 action on the bucket and its objects without TLS."""
    denials = [
        s
        for s in policy["Statement"]
        if s["Effect"] == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert len(denials) == 1, policy
    (deny,) = denials
    assert deny["Action"] == "s3:*"
    assert sorted(as_list(deny["Resource"])) == [
        f"arn:aws:s3:::{bucket}",
        f"arn:aws:s3:::{bucket}/*",
    ]


def test_logs_bucket_receives_access_logs_only(outputs: dict[str, Any], moto_endpoint: str) -> None:
    s3 = client("s3", moto_endpoint)
    name = outputs["logs_bucket"]
    rule = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"][0]
    # S3 server access logging delivers only to SSE-S3 buckets.
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    assert all(s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"].values())
    policy = json.loads(s3.get_bucket_policy(Bucket=name)["Policy"])
    assert_tls_only(policy, name)
    (delivery,) = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Action"] == "s3:PutObject"
    assert delivery["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    sources = sorted(as_list(delivery["Condition"]["ArnLike"]["aws:SourceArn"]))
    expected = sorted(
        f"arn:aws:s3:::{outputs[b]}"
        for b in ("data_bucket", "processed_bucket", "models_bucket", "capture_bucket")
    )
    assert sources == expected
    (lifecycle,) = s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
    assert lifecycle["Expiration"] == {"Days": 365}


def role_policies(iam: Any, role_name: str) -> list[dict[str, Any]]:
    """The statements of every policy on a role; fails on inline or AWS-managed policies."""
    assert iam.list_role_policies(RoleName=role_name)["PolicyNames"] == []
    attached = iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
    assert len(attached) == 1, attached
    statements: list[dict[str, Any]] = []
    for policy in attached:
        assert policy["PolicyArn"].startswith(f"arn:aws:iam::{ACCOUNT}:policy/"), policy
        assert "FullAccess" not in policy["PolicyName"]
        version = iam.get_policy(PolicyArn=policy["PolicyArn"])["Policy"]["DefaultVersionId"]
        document = iam.get_policy_version(PolicyArn=policy["PolicyArn"], VersionId=version)
        statements += document["PolicyVersion"]["Document"]["Statement"]
    return statements


def assert_least_privilege(statements: list[dict[str, Any]], outputs: dict[str, Any]) -> None:
    """No wildcard actions; "*" resources only for unscoped actions; S3 and KMS only ours."""
    buckets = {
        outputs[b] for b in ("data_bucket", "processed_bucket", "models_bucket", "capture_bucket")
    }
    for statement in statements:
        if statement["Effect"] == "Deny":
            continue  # a Deny grants nothing; the role's own test checks its one Deny
        assert statement["Effect"] == "Allow"
        actions = as_list(statement["Action"])
        resources = as_list(statement["Resource"])
        for action in actions:
            assert "*" not in action, f"wildcard action {action} in {statement['Sid']}"
        if "*" in resources:
            assert set(actions) <= UNSCOPED_ACTIONS, statement["Sid"]
        for resource in resources:
            if resource.startswith("arn:aws:s3:::"):
                assert resource.removeprefix("arn:aws:s3:::").split("/")[0] in buckets, resource
            if any(a.startswith("kms:") for a in actions):
                assert resource == outputs["kms_key_arn"], statement["Sid"]
            if actions == ["sagemaker:ListModelPackages"]:
                # A listing names no package: this account's and region's are the scope.
                assert resource == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/*"
            elif resource.startswith("arn:aws:sagemaker:"):
                name = resource.split(":", 5)[5].split("/", 1)[1]
                assert name.startswith(NAME_PREFIX), resource
    metrics = [s for s in statements if "cloudwatch:PutMetricData" in as_list(s["Action"])]
    for statement in metrics:
        assert "cloudwatch:namespace" in json.dumps(statement.get("Condition", {}))


def test_execution_role_is_least_privilege(outputs: dict[str, Any], moto_endpoint: str) -> None:
    iam = client("iam", moto_endpoint)
    role = iam.get_role(RoleName=outputs["sagemaker_execution_role_arn"].split("/")[-1])["Role"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    statements = role_policies(iam, role["RoleName"])
    assert_least_privilege(statements, outputs)
    by_sid = {s["Sid"]: s for s in statements}
    assert sorted(as_list(by_sid["ReadRawData"]["Resource"])) == [
        f"arn:aws:s3:::{outputs['data_bucket']}/*"
    ]
    written = {
        r.split(":::")[1].split("/")[0] for r in as_list(by_sid["ReadWriteWorkData"]["Resource"])
    }
    assert outputs["data_bucket"] not in written, "jobs must not overwrite the raw data"
    pulled = as_list(by_sid["PullImages"]["Resource"])
    assert len(pulled) == 3 and all(f":repository/{NAME_PREFIX}/" in r for r in pulled)
    logs = as_list(by_sid["WriteSageMakerLogs"]["Resource"])
    assert all(":log-group:/aws/sagemaker/" in r for r in logs)
    assert "iam:PassRole" not in json.dumps(statements)


def test_kubeflow_role_trusts_only_the_pipeline_service_account(
    outputs: dict[str, Any], moto_endpoint: str
) -> None:
    iam = client("iam", moto_endpoint)
    role = iam.get_role(RoleName=outputs["kubeflow_irsa_role_arn"].split("/")[-1])["Role"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    (provider,) = [
        p
        for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
        if ":oidc-provider/oidc.eks." in p["Arn"]
    ]
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert trust["Principal"] == {"Federated": provider["Arn"]}
    issuer = provider["Arn"].split(":oidc-provider/")[1]
    assert trust["Condition"] == {
        "StringEquals": {
            f"{issuer}:sub": f"system:serviceaccount:{NAMESPACE}:{PIPELINE_SERVICE_ACCOUNT}",
            f"{issuer}:aud": "sts.amazonaws.com",
        }
    }
    statements = role_policies(iam, role["RoleName"])
    assert_least_privilege(statements, outputs)
    by_sid = {s["Sid"]: s for s in statements}
    pass_role = by_sid["PassExecutionRoleToSageMaker"]
    assert pass_role["Resource"] == outputs["sagemaker_execution_role_arn"]
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    create = by_sid["CreateJobsWithOurKey"]
    assert create["Condition"] == {
        "StringEquals": {"sagemaker:OutputKmsKey": outputs["kms_key_arn"]}
    }
    granted = {a for s in statements for a in as_list(s["Action"])}
    for needed in (
        "sagemaker:CreateTrainingJob",
        "sagemaker:StopTrainingJob",
        "sagemaker:CreateModelPackage",
        "sagemaker:UpdateEndpoint",
        "application-autoscaling:RegisterScalableTarget",
        "logs:GetLogEvents",
        "sns:Publish",
    ):
        assert needed in granted, needed

    # Auto scaling prerequisites, each scoped: the variant's weights on our endpoints only, the
    # service-linked role by exact ARN and service name.
    assert granted >= AUTOSCALING_PREREQUISITES, AUTOSCALING_PREREQUISITES - granted
    weights = by_sid["ScaleEndpointVariants"]
    assert as_list(weights["Action"]) == ["sagemaker:UpdateEndpointWeightsAndCapacities"]
    assert weights["Resource"] == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{NAME_PREFIX}-*"
    linked = by_sid["CreateEndpointScalingServiceRole"]
    assert linked["Resource"] == SCALING_SERVICE_LINKED_ROLE
    assert linked["Condition"] == {
        "StringEquals": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}
    }

    # The human in the loop: envs/local keeps the default pipeline_may_approve = false (as prod
    # does), so the role may register and update versions but is denied setting them Approved.
    denials = [s for s in statements if s["Effect"] == "Deny"]
    assert [s["Sid"] for s in denials] == ["DenySelfApproval"]
    (deny,) = denials
    assert sorted(as_list(deny["Action"])) == [
        "sagemaker:CreateModelPackage",
        "sagemaker:UpdateModelPackage",
    ]
    assert sorted(as_list(deny["Resource"])) == [
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/*",
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/*",
    ]
    assert deny["Condition"] == {"StringEquals": {"sagemaker:ModelApprovalStatus": "Approved"}}
    assert "sagemaker:UpdateModelPackage" in as_list(by_sid["RegisterModels"]["Action"])


def test_ci_role_trusts_only_this_repository_and_pushes_only_our_images(
    outputs: dict[str, Any], moto_endpoint: str
) -> None:
    """The publish job's role: GitHub's provider, exact subjects, ECR push to our three repos."""
    iam = client("iam", moto_endpoint)
    provider_arn = outputs["github_oidc_provider_arn"]
    assert provider_arn == f"arn:aws:iam::{ACCOUNT}:oidc-provider/{GITHUB_ISSUER}"
    provider = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=provider_arn)
    assert provider["Url"] == GITHUB_ISSUER
    assert provider["ClientIDList"] == ["sts.amazonaws.com"]

    role = iam.get_role(RoleName=outputs["ci_role_arn"].split("/")[-1])["Role"]
    assert role["RoleName"] == f"{NAME_PREFIX}-github-actions"
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Effect"] == "Allow"
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert trust["Principal"] == {"Federated": provider_arn}
    # Exact matches only: no StringLike, no wildcard subject, no other repository.
    assert trust["Condition"] == {
        "StringEquals": {
            f"{GITHUB_ISSUER}:aud": "sts.amazonaws.com",
            f"{GITHUB_ISSUER}:sub": [
                f"repo:{GITHUB_REPOSITORY}:ref:refs/heads/main",
                f"repo:{GITHUB_REPOSITORY}:environment:local",
            ],
        }
    }

    statements = role_policies(iam, role["RoleName"])
    by_sid = {s["Sid"]: s for s in statements}
    assert set(by_sid) == {
        "EcrLogin",
        "PushImages",
        "ListStateBucket",
        "ReadState",
        "ReadStateChecksum",
    }
    for statement in statements:
        assert statement["Effect"] == "Allow" and "Condition" not in statement
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"wildcard action {action} in {statement['Sid']}"
        if "*" in as_list(statement["Resource"]):
            assert as_list(statement["Action"]) == ["ecr:GetAuthorizationToken"]
    granted = {a for s in statements for a in as_list(s["Action"])}
    assert not {a for a in granted if a.split(":")[0] in {"iam", "sts", "kms", "sagemaker"}}
    assert {a for a in granted if a.startswith("s3:")} == {"s3:ListBucket", "s3:GetObject"}

    push = by_sid["PushImages"]
    assert sorted(as_list(push["Action"])) == sorted(ECR_PUSH_ACTIONS)
    repositories = client("ecr", moto_endpoint).describe_repositories(
        repositoryNames=[
            f"{NAME_PREFIX}/{image}" for image in ("training", "inference", "pipeline")
        ]
    )["repositories"]
    assert sorted(as_list(push["Resource"])) == sorted(r["repositoryArn"] for r in repositories)
    ecr_statements = [
        s for s in statements if any(a.startswith("ecr:") for a in as_list(s["Action"]))
    ]
    assert [s["Sid"] for s in ecr_statements] == ["EcrLogin", "PushImages"]

    state_bucket = f"arn:aws:s3:::{NAME_PREFIX}-terraform-state"
    assert by_sid["ListStateBucket"]["Resource"] == state_bucket
    assert by_sid["ReadState"]["Resource"] == f"{state_bucket}/skinlesion/local/terraform.tfstate"
    assert by_sid["ReadStateChecksum"]["Resource"] == (
        f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/terraform-state-locks"
    )


def test_image_repositories_are_immutable_scanned_and_encrypted(
    outputs: dict[str, Any], moto_endpoint: str
) -> None:
    ecr = client("ecr", moto_endpoint)
    names = [f"{NAME_PREFIX}/{image}" for image in ("inference", "pipeline", "training")]
    repositories = ecr.describe_repositories(repositoryNames=names)["repositories"]
    assert sorted(r["repositoryName"] for r in repositories) == names
    for repository in repositories:
        assert repository["imageTagMutability"] == "IMMUTABLE"
        assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repository["encryptionConfiguration"] == {
            "encryptionType": "KMS",
            "kmsKey": outputs["kms_key_arn"],
        }
        lifecycle = ecr.get_lifecycle_policy(repositoryName=repository["repositoryName"])
        rules = json.loads(lifecycle["lifecyclePolicyText"])["rules"]
        assert [r["selection"]["tagStatus"] for r in rules] == ["untagged", "any"]


def test_alerts_reach_the_encrypted_topic(outputs: dict[str, Any], moto_endpoint: str) -> None:
    sns = client("sns", moto_endpoint)
    topic = outputs["sns_topic_arn"]
    attributes = sns.get_topic_attributes(TopicArn=topic)["Attributes"]
    assert attributes["KmsMasterKeyId"] == outputs["kms_key_arn"]
    publishers = {
        s["Principal"].get("Service")
        for s in json.loads(attributes["Policy"])["Statement"]
        if s["Effect"] == "Allow"
    }
    assert {
        "events.amazonaws.com",
        "cloudwatch.amazonaws.com",
        "budgets.amazonaws.com",
    } <= publishers

    cloudwatch = client("cloudwatch", moto_endpoint)
    alarms = cloudwatch.describe_alarms(AlarmNamePrefix=NAME_PREFIX)["MetricAlarms"]
    by_name = {a["AlarmName"]: a for a in alarms}
    assert set(by_name) == {
        f"{NAME_PREFIX}-endpoint-5xx",
        f"{NAME_PREFIX}-endpoint-latency-p99",
        f"{NAME_PREFIX}-training-job-failed",
    }
    assert all(a["AlarmActions"] == [topic] for a in alarms)
    latency = by_name[f"{NAME_PREFIX}-endpoint-latency-p99"]
    assert latency["ExtendedStatistic"] == "p99" and latency["Threshold"] == 500_000
    assert {d["Name"]: d["Value"] for d in latency["Dimensions"]} == {
        "EndpointName": outputs["endpoint_name"],
        "VariantName": "AllTraffic",
    }
    assert sorted(outputs["endpoint_alarm_names"]) == sorted(
        [f"{NAME_PREFIX}-endpoint-5xx", f"{NAME_PREFIX}-endpoint-latency-p99"]
    )
    dashboard = json.loads(cloudwatch.get_dashboard(DashboardName=NAME_PREFIX)["DashboardBody"])
    assert len(dashboard["widgets"]) == 5

    events = client("events", moto_endpoint)
    rules = {r["Name"]: r for r in events.list_rules(NamePrefix=NAME_PREFIX)["Rules"]}
    assert set(rules) == {
        f"{NAME_PREFIX}-training-job-failed",
        f"{NAME_PREFIX}-model-package-approved",
    }
    failed = json.loads(rules[f"{NAME_PREFIX}-training-job-failed"]["EventPattern"])
    assert failed["detail"] == {
        "TrainingJobStatus": ["Failed"],
        "TrainingJobName": [{"prefix": f"{NAME_PREFIX}-"}],
    }
    approved = json.loads(rules[f"{NAME_PREFIX}-model-package-approved"]["EventPattern"])
    assert approved == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "detail": {
            "ModelPackageGroupName": [outputs["model_package_group_name"]],
            "ModelApprovalStatus": ["Approved"],
        },
    }
    for rule in rules:
        targets = events.list_targets_by_rule(Rule=rule)["Targets"]
        assert [t["Arn"] for t in targets] == [topic]


def test_sagemaker_log_groups_expire_and_use_the_key(
    outputs: dict[str, Any], moto_endpoint: str
) -> None:
    """The groups SageMaker would create without expiry exist first, with retention and key."""
    logs = client("logs", moto_endpoint)
    groups = {
        g["logGroupName"]: g
        for g in logs.describe_log_groups(logGroupNamePrefix="/aws/sagemaker/")["logGroups"]
    }
    expected = {
        "/aws/sagemaker/TrainingJobs",
        "/aws/sagemaker/ProcessingJobs",
        f"/aws/sagemaker/Endpoints/{outputs['endpoint_name']}",
    }
    assert set(groups) == expected
    assert sorted(outputs["sagemaker_log_group_names"]) == sorted(expected)
    for group in groups.values():
        assert group["retentionInDays"] == 30, group  # log_retention_days' default
        assert group["kmsKeyId"] == outputs["kms_key_arn"], group
    # CloudWatch Logs may use the key for these groups only (encryption context).
    kms = client("kms", moto_endpoint)
    policy = json.loads(
        kms.get_key_policy(KeyId=outputs["kms_key_arn"], PolicyName="default")["Policy"]
    )
    (logs_statement,) = [
        s
        for s in policy["Statement"]
        if s["Principal"] == {"Service": f"logs.{REGION}.amazonaws.com"}
    ]
    assert logs_statement["Condition"] == {
        "ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": (
                f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/*"
            )
        }
    }


def test_resources_moto_cannot_serve_are_left_out(
    outputs: dict[str, Any], moto_endpoint: str
) -> None:
    """envs/local leaves out the budget and the model package group (see docs/aws.md)."""
    sagemaker = client("sagemaker", moto_endpoint)
    groups = sagemaker.list_model_package_groups()["ModelPackageGroupSummaryList"]
    assert outputs["model_package_group_name"] not in [g["ModelPackageGroupName"] for g in groups]


def test_destroy_removes_everything(
    applied: dict[str, Any], make: Make, moto_endpoint: str
) -> None:
    """Runs last of the tests on the applied platform (the fixture then has nothing to do)."""
    outputs = applied["outputs"]
    make("tf-local-down", *applied["variables"], timeout=600)
    applied["destroyed"] = True
    s3 = client("s3", moto_endpoint)
    left = [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith(NAME_PREFIX)]
    assert left == []
    iam = client("iam", moto_endpoint)
    assert not [r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(NAME_PREFIX)]
    assert iam.list_open_id_connect_providers()["OpenIDConnectProviderList"] == []
    kms = client("kms", moto_endpoint)
    key = kms.describe_key(KeyId=outputs["kms_key_arn"])["KeyMetadata"]
    assert key["KeyState"] == "PendingDeletion"
    assert client("ecr", moto_endpoint).describe_repositories()["repositories"] == []
    logs = client("logs", moto_endpoint)
    assert logs.describe_log_groups(logGroupNamePrefix="/aws/sagemaker/")["logGroups"] == []


def plan_through_s3_backend(
    make: Make, moto_endpoint: str, tmp_path: Path, env: str
) -> dict[str, Any]:
    """The documented path for dev and prod: state bucket and lock table, init, plan, show -json.

    The provider and the backend reach moto through AWS_ENDPOINT_URL and the backend file.
    """
    s3 = client("s3", moto_endpoint)
    dynamodb = client("dynamodb", moto_endpoint)
    if "tfstate-test" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="tfstate-test")
        s3.put_bucket_versioning(
            Bucket="tfstate-test", VersioningConfiguration={"Status": "Enabled"}
        )
    if "terraform-state-locks" not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(
            TableName="terraform-state-locks",
            AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    backend = tmp_path / "backend.hcl"
    example = (REPO_ROOT / "terraform" / "envs" / env / "backend.hcl.example").read_text()
    backend.write_text(
        example.replace("my-org-terraform-state-111122223333", "tfstate-test").replace(
            '"eu-west-1"', f'"{REGION}"'
        )
        + "use_path_style = true\nskip_credentials_validation = true\n"
        + "skip_requesting_account_id = true\nskip_metadata_api_check = true\n"
        + f'endpoints = {{\n  s3 = "{moto_endpoint}"\n  dynamodb = "{moto_endpoint}"\n}}\n'
    )
    environment = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_MAX_ATTEMPTS": "1",
        "TF_VAR_region": REGION,
        "TF_VAR_allowed_account_ids": f'["{ACCOUNT}"]',
        "TF_VAR_oidc_provider_url": "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE",
        "TF_VAR_oidc_provider_arn": (
            f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE"
        ),
        "TF_VAR_github_repository": GITHUB_REPOSITORY,
        "TF_VAR_terraform_state_bucket": "tfstate-test",
    }
    env_make = Make(env={**make.env, **environment}, build=make.build)
    env_make("tf-plan", f"ENV={env}", f"TF_BACKEND_CONFIG={backend}", timeout=600)
    shown = subprocess.run(
        [
            "terraform",
            f"-chdir={make.build / 'work' / 'envs' / env}",
            "show",
            "-json",
            str(make.build / f"{env}.tfplan"),
        ],
        env=env_make.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    # The lock was taken and released: the table exists and holds no lock now.
    locks = dynamodb.scan(TableName="terraform-state-locks")["Items"]
    assert [item for item in locks if "Info" in item] == []
    return dict(json.loads(shown.stdout))


def created_of(plan: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The `after` values of the resources of one type that the plan creates."""
    return [
        c["change"]["after"]
        for c in plan["resource_changes"]
        if c["type"] == kind and c["change"]["actions"] == ["create"]
    ]


def kubeflow_policy_statements(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of the Kubeflow role's policy document as planned (ARNs still unknown).

    The document reads ARNs that only apply knows, so Terraform defers it: it is a `read` in
    resource_changes whose statement blocks (sid, effect, actions, conditions) are known.
    """
    (document,) = [
        c
        for c in plan["resource_changes"]
        if c["mode"] == "data"
        and c["type"] == "aws_iam_policy_document"
        and c["name"] == "kubeflow"
    ]
    assert document["change"]["actions"] == ["read"], document["change"]["actions"]
    return list(document["change"]["after"]["statement"])


def assert_common_plan(plan: dict[str, Any], env: str, retention_days: int) -> None:
    """What dev and prod plan alike: trust, autoscaling, log groups, budget filter, tags."""
    prefix = f"skinlesion-{env}"
    created = [c for c in plan["resource_changes"] if c["change"]["actions"] == ["create"]]
    types = {c["type"] for c in created}
    assert {"aws_budgets_budget", "aws_sagemaker_model_package_group", "aws_kms_key"} <= types
    assert len(created) > 50
    roles = {r["name"]: r for r in created_of(plan, "aws_iam_role")}
    assert set(roles) == {
        f"{prefix}-sagemaker-execution",
        f"{prefix}-kubeflow-pipelines",
        f"{prefix}-github-actions",
    }
    trust = json.loads(roles[f"{prefix}-kubeflow-pipelines"]["assume_role_policy"])
    assert trust["Statement"][0]["Condition"]["StringEquals"] == {
        "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE:sub": (
            f"system:serviceaccount:{prefix}:{PIPELINE_SERVICE_ACCOUNT}"
        ),
        "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE:aud": "sts.amazonaws.com",
    }
    granted = {
        action
        for s in kubeflow_policy_statements(plan)
        if s["effect"] in ("", None, "Allow")
        for action in s["actions"]
    }
    assert granted >= AUTOSCALING_PREREQUISITES, AUTOSCALING_PREREQUISITES - granted

    # The budget counts the environment's cost-allocation tag, which every resource carries.
    (budget,) = created_of(plan, "aws_budgets_budget")
    assert budget["cost_filter"] == [
        {"name": "TagKeyValue", "values": [f"user:skinlesion:prefix${prefix}"]}
    ]
    (key,) = created_of(plan, "aws_kms_key")
    assert key["tags_all"]["skinlesion:prefix"] == prefix

    groups = {g["name"]: g for g in created_of(plan, "aws_cloudwatch_log_group")}
    assert set(groups) == {
        "/aws/sagemaker/TrainingJobs",
        "/aws/sagemaker/ProcessingJobs",
        f"/aws/sagemaker/Endpoints/{prefix}-endpoint",
    }
    assert {g["retention_in_days"] for g in groups.values()} == {retention_days}


def test_dev_plans_through_its_s3_backend(make: Make, moto_endpoint: str, tmp_path: Path) -> None:
    """dev: the plan holds what envs/local leaves out (budget, model package group), GitHub's
    provider, the CI role for main and the environment dev, 30-day logs and auto-approval."""
    plan = plan_through_s3_backend(make, moto_endpoint, tmp_path, "dev")
    assert_common_plan(plan, "dev", retention_days=30)
    # dev keeps auto-approval (pipeline_may_approve = true): no Deny in the pipeline's policy.
    statements = kubeflow_policy_statements(plan)
    assert [s for s in statements if s["effect"] == "Deny"] == []
    assert "DenySelfApproval" not in {s["sid"] for s in statements}
    created = [c for c in plan["resource_changes"] if c["change"]["actions"] == ["create"]]
    roles = {r["name"]: r for r in created_of(plan, "aws_iam_role")}
    # CI: GitHub's provider is created, and the role trusts main and the publish job's environment.
    (provider,) = [c for c in created if c["type"] == "aws_iam_openid_connect_provider"]
    assert provider["change"]["after"]["url"] == f"https://{GITHUB_ISSUER}"
    assert provider["change"]["after"]["client_id_list"] == ["sts.amazonaws.com"]
    ci_trust = json.loads(roles["skinlesion-dev-github-actions"]["assume_role_policy"])
    (statement,) = ci_trust["Statement"]
    assert statement["Principal"] == {
        "Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{GITHUB_ISSUER}"
    }
    assert statement["Condition"] == {
        "StringEquals": {
            f"{GITHUB_ISSUER}:aud": "sts.amazonaws.com",
            f"{GITHUB_ISSUER}:sub": [
                f"repo:{GITHUB_REPOSITORY}:ref:refs/heads/main",
                f"repo:{GITHUB_REPOSITORY}:environment:dev",
            ],
        }
    }


def test_prod_plans_the_approval_deny(make: Make, moto_endpoint: str, tmp_path: Path) -> None:
    """prod: the pipeline role is denied setting ModelApprovalStatus=Approved; 90-day logs."""
    plan = plan_through_s3_backend(make, moto_endpoint, tmp_path, "prod")
    assert_common_plan(plan, "prod", retention_days=90)
    denials = [s for s in kubeflow_policy_statements(plan) if s["effect"] == "Deny"]
    assert [s["sid"] for s in denials] == ["DenySelfApproval"]
    (deny,) = denials
    assert sorted(deny["actions"]) == [
        "sagemaker:CreateModelPackage",
        "sagemaker:UpdateModelPackage",
    ]
    assert [(c["test"], c["variable"], c["values"]) for c in deny["condition"]] == [
        ("StringEquals", "sagemaker:ModelApprovalStatus", ["Approved"])
    ]
