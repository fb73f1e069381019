"""Deployment: Model from an Approved package, EndpointConfig with data capture, the endpoint,
target tracking autoscaling; blue/green updates with auto-rollback alarms; delete."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from tests.aws.helpers import BUCKETS, ROLE_ARN, TEST_GROUP, offline_client, registered

from skinlesion.aws import AwsClients
from skinlesion.backends.base import ApprovalStatus, DeployRequest
from skinlesion.backends.errors import EndpointNotFoundError
from skinlesion.backends.sagemaker import SageMakerBackend
from skinlesion.backends.sagemaker.deployment import EndpointDeployer
from skinlesion.backends.sagemaker.errors import DeploymentError, ModelNotApprovedError
from skinlesion.backends.sagemaker.instance_storage import has_instance_storage
from skinlesion.backends.sagemaker.validation import request_problems
from skinlesion.settings import Settings

ENDPOINT = "skinlesion-test"
RESOURCE = f"endpoint/{ENDPOINT}/variant/AllTraffic"
CAPTURE = f"s3://{BUCKETS['capture_bucket']}/capture"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def scaling(clients: AwsClients) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    autoscaling = clients.client("application-autoscaling")
    targets = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    policies = autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")[
        "ScalingPolicies"
    ]
    return targets, policies


def test_deploy_creates_model_config_endpoint_and_autoscaling(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    version = registered(backend, clients, "run-1", 0.75)
    endpoint = backend.deploy(
        DeployRequest(
            model_version_arn=version.arn,
            endpoint_name=ENDPOINT,
            max_instances=4,
            capture_percentage=20,
        )
    )
    sagemaker = clients.client("sagemaker")
    assert endpoint.status == "InService"
    assert (
        endpoint.url
        == f"https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/{ENDPOINT}/invocations"
    )
    assert endpoint.capture_uri == CAPTURE
    model = sagemaker.describe_model(ModelName=endpoint.details["model"])
    assert model["PrimaryContainer"] == {"ModelPackageName": version.arn}
    assert model["ExecutionRoleArn"] == ROLE_ARN
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=endpoint.details["endpoint_config"]
    )
    assert config["ProductionVariants"][0] == {
        "VariantName": "AllTraffic",
        "ModelName": endpoint.details["model"],
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
        "InitialVariantWeight": 1.0,
    }
    assert config["DataCaptureConfig"] == {
        "EnableCapture": True,
        "InitialSamplingPercentage": 20,
        "DestinationS3Uri": CAPTURE,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
    }
    assert (
        sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
        == config["EndpointConfigName"]
    )
    targets, policies = scaling(clients)
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [
        (RESOURCE, 1, 4)
    ]
    (policy,) = policies
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["TargetTrackingScalingPolicyConfiguration"] == {
        "TargetValue": 100.0,
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
        },
        "ScaleInCooldown": 300,
        "ScaleOutCooldown": 60,
    }
    assert endpoint.details["scaling_policy_arn"] == policy["PolicyARN"]
    # Deploying the same again changes nothing: same model, same config, one of each.
    again = backend.deploy(
        DeployRequest(
            model_version_arn=version.arn,
            endpoint_name=ENDPOINT,
            max_instances=4,
            capture_percentage=20,
        )
    )
    assert again.details["endpoint_config"] == endpoint.details["endpoint_config"]
    assert len(sagemaker.list_endpoint_configs()["EndpointConfigs"]) == 1
    assert len(sagemaker.list_models()["Models"]) == 1


def test_only_approved_packages_are_deployed(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    registered(backend, clients, "run-1", 0.80)
    pending = registered(backend, clients, "run-2", 0.70)
    assert pending.approval_status is ApprovalStatus.PENDING
    with pytest.raises(
        ModelNotApprovedError, match="is PendingManualApproval; only Approved packages"
    ):
        backend.deploy(DeployRequest(model_version_arn=pending.arn, endpoint_name=ENDPOINT))
    assert clients.client("sagemaker").list_models()["Models"] == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("min_instances", 0, "min_instances 0"),
        ("max_instances", 0, "max_instances 0: must be >= min_instances"),
        ("capture_percentage", 101, "capture_percentage 101"),
        ("endpoint_name", "bad_name", "letters, digits and hyphens"),
        ("instance_type", "m5.large", "ml.m5.large"),
    ],
)
def test_bad_deploy_requests_are_refused_before_any_call(
    field: str, value: Any, message: str
) -> None:
    client = offline_client("sagemaker")
    deployer = EndpointDeployer(client, None, None, Settings(region="us-east-1"))
    request = DeployRequest(
        model_version_arn="arn:aws:sagemaker:us-east-1:1:model-package/g/1", endpoint_name="ok"
    )
    with Stubber(client), pytest.raises(ValueError, match=message):
        deployer.deploy(DeployRequest(**{**request.__dict__, field: value}))


def test_delete_removes_endpoint_config_and_scaling(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    version = registered(backend, clients, "run-1", 0.75)
    deployed = backend.deploy(DeployRequest(model_version_arn=version.arn, endpoint_name=ENDPOINT))
    backend.delete_endpoint(ENDPOINT)
    sagemaker = clients.client("sagemaker")
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    with pytest.raises(ClientError, match="Could not find endpoint configuration"):
        sagemaker.describe_endpoint_config(EndpointConfigName=deployed.details["endpoint_config"])
    assert scaling(clients) == ([], [])
    # A second delete names the endpoint that is not there, as DeleteEndpoint itself does.
    with pytest.raises(EndpointNotFoundError, match=ENDPOINT):
        backend.delete_endpoint(ENDPOINT)


# --- blue/green updates: moto has no UpdateEndpoint, so SageMaker is stubbed; the alarms
# --- (CloudWatch) and the autoscaling calls still go to moto.
PACKAGE_ARN = f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{TEST_GROUP}/2"
OLD_CONFIG = f"{ENDPOINT}-0ld0ld00"


def package(status: str = "Approved") -> dict[str, Any]:
    return {
        "ModelPackageName": TEST_GROUP,
        "ModelPackageGroupName": TEST_GROUP,
        "ModelPackageVersion": 2,
        "ModelPackageArn": PACKAGE_ARN,
        "CreationTime": NOW,
        "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": []},
        "ModelApprovalStatus": status,
    }


def endpoint_description(status: str, config: str, **extra: Any) -> dict[str, Any]:
    return {
        "EndpointName": ENDPOINT,
        "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
        **extra,
    }


def config_description(name: str, instance_type: str) -> dict[str, Any]:
    return {
        "EndpointConfigName": name,
        "EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{name}",
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "ModelName": "m", "InstanceType": instance_type}
        ],
        "CreationTime": NOW,
    }


def missing(stubber: Stubber, operation: str, params: dict[str, str]) -> None:
    stubber.add_client_error(
        operation, "ValidationException", "Could not find it.", 400, expected_params=params
    )


@pytest.fixture
def deployer(
    settings: Settings, clients: AwsClients
) -> tuple[EndpointDeployer, Stubber, list[str]]:
    """A deployer on a stubbed SageMaker client and moto's autoscaling and CloudWatch; the third
    item records every operation of the three clients in order."""
    sagemaker = offline_client("sagemaker")
    calls: list[str] = []
    for client in (sagemaker, clients.client("application-autoscaling")):
        client.meta.events.register(
            "before-parameter-build.*.*", lambda model, **_: calls.append(model.name)
        )
    result = EndpointDeployer(
        sagemaker,
        clients.client("application-autoscaling"),
        clients.client("cloudwatch"),
        settings,
        sleep=lambda _: None,
    )
    return result, Stubber(sagemaker), calls


def queue_update(
    stubber: Stubber, deployer: EndpointDeployer, request: DeployRequest, old_type: str
) -> str:
    """The calls of an update up to UpdateEndpoint; returns the new config's name."""
    stubber.add_response("describe_model_package", package(), {"ModelPackageName": PACKAGE_ARN})
    stubber.add_client_error("describe_model", "ValidationException", "Could not find model.", 400)
    stubber.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:1:model/m"})
    config = deployer.endpoint_config_request(
        request, deployer.model_name(ENDPOINT, package()), CAPTURE
    )
    # The running endpoint is read first: the new fleet is sized from it.
    stubber.add_response(
        "describe_endpoint",
        endpoint_description("InService", OLD_CONFIG),
        {"EndpointName": ENDPOINT},
    )
    stubber.add_client_error(
        "describe_endpoint_config",
        "ValidationException",
        "Could not find endpoint configuration.",
        400,
    )
    stubber.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:endpoint-config/c"},
    )
    stubber.add_response(
        "describe_endpoint_config",
        config_description(OLD_CONFIG, old_type),
        {"EndpointConfigName": OLD_CONFIG},
    )
    return str(config["EndpointConfigName"])


def test_an_existing_endpoint_is_updated_blue_green_with_its_alarms(
    deployer: tuple[EndpointDeployer, Stubber, list[str]], clients: AwsClients
) -> None:
    subject, stubber, calls = deployer
    cloudwatch = clients.client("cloudwatch")
    for name, endpoint_name in [("skinlesion-test-5xx", ENDPOINT), ("other-endpoint-5xx", "other")]:
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/SageMaker",
            MetricName="Invocation5XXErrors",
            Dimensions=[
                {"Name": "EndpointName", "Value": endpoint_name},
                {"Name": "VariantName", "Value": "AllTraffic"},
            ],
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
    request = DeployRequest(model_version_arn=PACKAGE_ARN, endpoint_name=ENDPOINT)
    with stubber:
        new_config = queue_update(stubber, subject, request, "ml.m5.large")
        expected_update = {
            "EndpointName": ENDPOINT,
            "EndpointConfigName": new_config,
            "RetainAllVariantProperties": False,
            "DeploymentConfig": {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "ALL_AT_ONCE",
                        "WaitIntervalInSeconds": 0,
                    },
                    "TerminationWaitInSeconds": 600,
                    "MaximumExecutionTimeoutInSeconds": 3600,
                },
                "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "skinlesion-test-5xx"}]},
            },
        }
        stubber.add_response(
            "update_endpoint",
            {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/e"},
            expected_update,
        )
        stubber.add_response(
            "describe_endpoint",
            endpoint_description("Updating", OLD_CONFIG),
            {"EndpointName": ENDPOINT},
        )
        stubber.add_response(
            "describe_endpoint",
            endpoint_description("InService", new_config),
            {"EndpointName": ENDPOINT},
        )
        endpoint = subject.deploy(request)
        stubber.assert_no_pending_responses()
    assert endpoint.details["rollback_alarms"] == ["skinlesion-test-5xx"]
    assert endpoint.details["endpoint_config"] == new_config
    # Same instance type: the variant stays registered for scaling during the update.
    assert "DeregisterScalableTarget" not in calls
    assert calls[-2:] == ["RegisterScalableTarget", "PutScalingPolicy"]


def test_a_new_instance_type_deregisters_scaling_before_the_update(
    deployer: tuple[EndpointDeployer, Stubber, list[str]], clients: AwsClients
) -> None:
    """Application Auto Scaling refuses an update that changes a scaled variant's type."""
    subject, stubber, calls = deployer
    clients.client("application-autoscaling").register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=RESOURCE,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=5,
    )
    calls.clear()
    request = DeployRequest(
        model_version_arn=PACKAGE_ARN, endpoint_name=ENDPOINT, instance_type="ml.c5.xlarge"
    )
    with stubber:
        new_config = queue_update(stubber, subject, request, "ml.m5.large")
        stubber.add_response(
            "update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/e"}
        )
        stubber.add_response(
            "describe_endpoint",
            endpoint_description("InService", new_config),
            {"EndpointName": ENDPOINT},
        )
        subject.deploy(request)
    assert (
        calls.index("DeregisterScalableTarget")
        < calls.index("UpdateEndpoint")
        < calls.index("RegisterScalableTarget")
    )
    targets, _ = scaling(clients)
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [
        (RESOURCE, 1, 5)
    ]


def test_a_rolled_back_update_raises_with_the_reason(
    deployer: tuple[EndpointDeployer, Stubber, list[str]],
) -> None:
    subject, stubber, _ = deployer
    request = DeployRequest(model_version_arn=PACKAGE_ARN, endpoint_name=ENDPOINT)
    reason = "Rolled back: alarm skinlesion-test-5xx went into ALARM during the baking period."
    with stubber:
        queue_update(stubber, subject, request, "ml.m5.large")
        stubber.add_response(
            "update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/e"}
        )
        stubber.add_response(
            "describe_endpoint",
            endpoint_description("RollingBack", OLD_CONFIG),
            {"EndpointName": ENDPOINT},
        )
        stubber.add_response(
            "describe_endpoint",
            endpoint_description("InService", OLD_CONFIG, FailureReason=reason),
            {"EndpointName": ENDPOINT},
        )
        with pytest.raises(DeploymentError, match=f"rolled back to {OLD_CONFIG}") as caught:
            subject.deploy(request)
    assert reason in str(caught.value)


def test_a_failed_new_endpoint_raises_its_failure_reason(
    deployer: tuple[EndpointDeployer, Stubber, list[str]],
) -> None:
    subject, stubber, _ = deployer
    request = DeployRequest(model_version_arn=PACKAGE_ARN, endpoint_name=ENDPOINT)
    reason = "The primary container for production variant AllTraffic did not pass the ping health check."
    with stubber:
        stubber.add_response("describe_model_package", package(), {"ModelPackageName": PACKAGE_ARN})
        stubber.add_response(
            "describe_model",
            {
                "ModelName": "m",
                "ModelArn": "arn:aws:sagemaker:us-east-1:1:model/m",
                "CreationTime": NOW,
            },
        )
        missing(stubber, "describe_endpoint", {"EndpointName": ENDPOINT})
        stubber.add_response("describe_endpoint_config", config_description("c", "ml.m5.large"))
        stubber.add_response(
            "create_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/e"}
        )
        stubber.add_response(
            "describe_endpoint", endpoint_description("Creating", "c"), {"EndpointName": ENDPOINT}
        )
        for _ in range(2):  # the wait, then the autoscaling restore's look (Failed: nothing)
            stubber.add_response(
                "describe_endpoint",
                endpoint_description("Failed", "c", FailureReason=reason),
                {"EndpointName": ENDPOINT},
            )
        with pytest.raises(DeploymentError, match="is Failed: The primary container") as caught:
            subject.deploy(request)
    assert str(caught.value).endswith(reason)


def test_a_failed_endpoint_is_deleted_and_created_again(
    deployer: tuple[EndpointDeployer, Stubber, list[str]],
) -> None:
    """UpdateEndpoint is refused on a Failed endpoint; moto never has one, so this is stubbed."""
    subject, stubber, calls = deployer
    request = DeployRequest(model_version_arn=PACKAGE_ARN, endpoint_name=ENDPOINT)
    config = subject.endpoint_config_request(
        request, subject.model_name(ENDPOINT, package()), CAPTURE
    )
    name = config["EndpointConfigName"]
    model = {
        "ModelName": "m",
        "ModelArn": "arn:aws:sagemaker:us-east-1:1:model/m",
        "CreationTime": NOW,
    }
    with stubber:
        stubber.add_response("describe_model_package", package(), {"ModelPackageName": PACKAGE_ARN})
        stubber.add_response("describe_model", model)
        stubber.add_response(
            "describe_endpoint",
            endpoint_description("Failed", OLD_CONFIG),
            {"EndpointName": ENDPOINT},
        )
        stubber.add_response("delete_endpoint", {}, {"EndpointName": ENDPOINT})
        stubber.add_response(
            "describe_endpoint",
            endpoint_description("Deleting", OLD_CONFIG),
            {"EndpointName": ENDPOINT},
        )
        missing(stubber, "describe_endpoint", {"EndpointName": ENDPOINT})
        stubber.add_response("describe_endpoint_config", config_description(name, "ml.m5.large"))
        stubber.add_response(
            "create_endpoint",
            {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/e"},
            {
                "EndpointName": ENDPOINT,
                "EndpointConfigName": name,
                "Tags": subject.resource_tags(PACKAGE_ARN),
            },
        )
        stubber.add_response(
            "describe_endpoint", endpoint_description("InService", name), {"EndpointName": ENDPOINT}
        )
        endpoint = subject.deploy(request)
        stubber.assert_no_pending_responses()
    assert endpoint.status == "InService"
    assert calls.index("DeleteEndpoint") < calls.index("CreateEndpoint")


@pytest.mark.parametrize(
    ("instance_type", "expected"),
    [
        ("ml.m5.large", False),
        ("ml.c5.xlarge", False),
        ("ml.inf1.xlarge", False),
        ("ml.m5d.large", True),
        ("ml.g4dn.xlarge", True),
        ("ml.r5d.large", True),
        ("ml.p4d.24xlarge", True),
        ("ml.g5.xlarge", True),
    ],
)
def test_instance_storage_types_get_no_kms_key_on_the_endpoint_config(
    instance_type: str, expected: bool
) -> None:
    kms = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    deployer = EndpointDeployer(None, None, None, Settings(region="us-east-1", kms_key_arn=kms))
    request = DeployRequest(
        model_version_arn=PACKAGE_ARN, endpoint_name=ENDPOINT, instance_type=instance_type
    )
    params = deployer.endpoint_config_request(request, "model", CAPTURE)
    assert has_instance_storage(instance_type) is expected
    assert ("KmsKeyId" in params) is not expected
    assert params["DataCaptureConfig"]["KmsKeyId"] == kms  # the capture bucket is always encrypted
    assert (
        request_problems(
            offline_client("sagemaker").meta.service_model, "CreateEndpointConfig", params
        )
        == []
    )
