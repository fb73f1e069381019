"""Safe blue/green updates: autoscaling back after every outcome, the new fleet as large as the
running one, canary and linear traffic shifting.

moto gap: UpdateEndpoint is not implemented in moto 5.2, so the SageMaker client is botocore's
Stubber (requests and responses validated against the service model); Application Auto Scaling
and CloudWatch stay on moto's server, so the scaling that is left after a deploy is read back.
The traffic routing rules are SageMaker's: API reference TrafficRoutingConfig
(https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TrafficRoutingConfig.html: Type
ALL_AT_ONCE | CANARY | LINEAR, WaitIntervalInSeconds 0-3600, CanarySize <= 50 %, LinearStepSize
10-50 % of the fleet) and the guide "Blue/Green deployments"
(https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-blue-green.html, its
canary and linear pages: a bake of WaitIntervalInSeconds after each step, alarms roll back).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from botocore.stub import Stubber
from tests.aws.helpers import offline_client
from tests.aws.test_deployment import (
    CAPTURE,
    ENDPOINT,
    OLD_CONFIG,
    PACKAGE_ARN,
    RESOURCE,
    endpoint_description,
    package,
    queue_update,
    scaling,
)

from skinlesion.aws import AwsClients
from skinlesion.backends.base import DeployRequest
from skinlesion.backends.sagemaker.deployment import EndpointDeployer
from skinlesion.backends.sagemaker.errors import DeploymentError
from skinlesion.settings import Settings, SettingsError

Deployer = tuple[EndpointDeployer, Stubber, list[str]]
ARN = {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/e"}


@pytest.fixture
def stubbed(settings: Settings, clients: AwsClients) -> Deployer:
    """A deployer on a stubbed SageMaker client and moto's autoscaling and CloudWatch; the list
    records every SageMaker and Application Auto Scaling operation in order."""
    sagemaker = offline_client("sagemaker")
    autoscaling = clients.client("application-autoscaling")
    calls: list[str] = []
    for client in (sagemaker, autoscaling):
        client.meta.events.register(
            "before-parameter-build.*.*", lambda model, **_: calls.append(model.name)
        )
    subject = EndpointDeployer(
        sagemaker, autoscaling, clients.client("cloudwatch"), settings, sleep=lambda _: None
    )
    return subject, Stubber(sagemaker), calls


def _scaled(clients: AwsClients, low: int = 1, high: int = 5) -> None:
    """The endpoint as a previous deploy left it: registered with a target tracking policy."""
    autoscaling = clients.client("application-autoscaling")
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=RESOURCE,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=low,
        MaxCapacity=high,
    )


@pytest.mark.parametrize("outcome", ["rolled back", "update refused"])
def test_autoscaling_is_restored_when_an_update_with_a_new_type_does_not_go_through(
    stubbed: Deployer, clients: AwsClients, outcome: str
) -> None:
    """A new instance type deregisters the variant before UpdateEndpoint; whatever happens next,
    the endpoint that still serves (the old config, InService) scales again."""
    subject, stubber, calls = stubbed
    _scaled(clients)
    calls.clear()
    request = DeployRequest(
        model_version_arn=PACKAGE_ARN,
        endpoint_name=ENDPOINT,
        instance_type="ml.c5.xlarge",
        max_instances=4,
    )
    reason = "Rolled back: alarm skinlesion-test-5xx went into ALARM during the baking period."
    with stubber:
        queue_update(stubber, subject, request, "ml.m5.large")
        if outcome == "rolled back":
            stubber.add_response("update_endpoint", ARN)
            stubber.add_response(
                "describe_endpoint",
                endpoint_description("RollingBack", OLD_CONFIG),
                {"EndpointName": ENDPOINT},
            )
            final = endpoint_description("InService", OLD_CONFIG, FailureReason=reason)
            stubber.add_response("describe_endpoint", final, {"EndpointName": ENDPOINT})
            expected = f"rolled back to {OLD_CONFIG}"
        else:
            stubber.add_client_error(
                "update_endpoint", "ValidationException", "Cannot update in-progress endpoint."
            )
            expected = "Cannot update in-progress endpoint"
        # The restore looks at the endpoint once: InService on the old config.
        stubber.add_response(
            "describe_endpoint",
            endpoint_description("InService", OLD_CONFIG),
            {"EndpointName": ENDPOINT},
        )
        with pytest.raises(Exception, match=expected):
            subject.deploy(request)
        stubber.assert_no_pending_responses()
    assert calls.index("DeregisterScalableTarget") < calls.index("RegisterScalableTarget")
    targets, policies = scaling(clients)
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [
        (RESOURCE, 1, 4)
    ]
    assert [p["PolicyName"] for p in policies] == [f"{ENDPOINT}-invocations-per-instance"]


def test_a_failed_new_endpoint_gets_no_scaling(stubbed: Deployer, clients: AwsClients) -> None:
    """Nothing serves after a create that failed: nothing to scale (and the error is its own)."""
    subject, stubber, calls = stubbed
    request = DeployRequest(model_version_arn=PACKAGE_ARN, endpoint_name=ENDPOINT)
    name = subject.endpoint_config_request(
        request, subject.model_name(ENDPOINT, package()), CAPTURE
    )["EndpointConfigName"]
    with stubber:
        stubber.add_response("describe_model_package", package(), {"ModelPackageName": PACKAGE_ARN})
        stubber.add_client_error("describe_model", "ValidationException", "Could not find model.")
        stubber.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:1:model/m"})
        stubber.add_client_error("describe_endpoint", "ValidationException", "Could not find.")
        stubber.add_client_error("describe_endpoint_config", "ValidationException", "Not found.")
        stubber.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:endpoint-config/c"},
        )
        stubber.add_response("create_endpoint", ARN)
        failed = endpoint_description("Failed", name, FailureReason="ping health check failed")
        stubber.add_response("describe_endpoint", failed, {"EndpointName": ENDPOINT})
        stubber.add_response("describe_endpoint", failed, {"EndpointName": ENDPOINT})
        with pytest.raises(DeploymentError, match="is Failed: ping health check failed"):
            subject.deploy(request)
        stubber.assert_no_pending_responses()
    assert "RegisterScalableTarget" not in calls
    assert scaling(clients) == ([], [])


def _queue_sized_update(
    stubber: Stubber, subject: EndpointDeployer, request: DeployRequest, current: int
) -> dict[str, Any]:
    """An update of an endpoint whose AllTraffic variant runs ``current`` instances; returns the
    CreateEndpointConfig request expected."""
    model = subject.model_name(ENDPOINT, package())
    stubber.add_response("describe_model_package", package(), {"ModelPackageName": PACKAGE_ARN})
    stubber.add_client_error("describe_model", "ValidationException", "Could not find model.")
    stubber.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:1:model/m"})
    running = endpoint_description(
        "InService",
        OLD_CONFIG,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "CurrentInstanceCount": current,
                "DesiredInstanceCount": current,
            }
        ],
    )
    stubber.add_response("describe_endpoint", running, {"EndpointName": ENDPOINT})
    expected = subject.endpoint_config_request(
        request, model, CAPTURE, max(request.min_instances, min(request.max_instances, current))
    )
    stubber.add_client_error("describe_endpoint_config", "ValidationException", "Not found.")
    stubber.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:endpoint-config/c"},
        expected,
    )
    old = {
        "EndpointConfigName": OLD_CONFIG,
        "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:endpoint-config/old",
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": "m",
                "InstanceType": request.instance_type,
                "InitialInstanceCount": 1,
            }
        ],
        "CreationTime": endpoint_description("InService", OLD_CONFIG)["CreationTime"],
    }
    stubber.add_response("describe_endpoint_config", old, {"EndpointConfigName": OLD_CONFIG})
    stubber.add_response("update_endpoint", ARN)
    name = expected["EndpointConfigName"]
    stubber.add_response(
        "describe_endpoint", endpoint_description("InService", name), {"EndpointName": ENDPOINT}
    )
    return expected


@pytest.mark.parametrize(("current", "size"), [(3, 3), (9, 5), (1, 2)])
def test_the_new_fleet_is_as_large_as_the_running_one(
    stubbed: Deployer, current: int, size: int
) -> None:
    """Autoscaling scaled the endpoint out to ``current``: the green fleet starts at that size
    (clamped to min..max) instead of min_instances, so the update does not shrink it."""
    subject, stubber, _ = stubbed
    request = DeployRequest(
        model_version_arn=PACKAGE_ARN, endpoint_name=ENDPOINT, min_instances=2, max_instances=5
    )
    with stubber:
        expected = _queue_sized_update(stubber, subject, request, current)
        endpoint = subject.deploy(request)
        stubber.assert_no_pending_responses()
    assert expected["ProductionVariants"][0]["InitialInstanceCount"] == size
    assert endpoint.details["endpoint_config"] == expected["EndpointConfigName"]


def test_a_scaled_out_endpoint_that_serves_the_same_model_is_not_updated(
    stubbed: Deployer,
) -> None:
    """The config's name hashes what it serves, not the fleet size autoscaling changes: the same
    package at 3 instances is recognised and nothing is updated."""
    subject, stubber, calls = stubbed
    request = DeployRequest(model_version_arn=PACKAGE_ARN, endpoint_name=ENDPOINT)
    model = subject.model_name(ENDPOINT, package())
    serving = subject.endpoint_config_request(request, model, CAPTURE, 3)["EndpointConfigName"]
    running = endpoint_description(
        "InService",
        serving,
        ProductionVariants=[{"VariantName": "AllTraffic", "CurrentInstanceCount": 3}],
    )
    with stubber:
        stubber.add_response("describe_model_package", package(), {"ModelPackageName": PACKAGE_ARN})
        stubber.add_response(
            "describe_model",
            {
                "ModelName": model,
                "ModelArn": "arn:aws:sagemaker:us-east-1:1:model/m",
                "CreationTime": running["CreationTime"],
            },
        )
        stubber.add_response("describe_endpoint", running, {"EndpointName": ENDPOINT})
        stubber.add_response("describe_endpoint", running, {"EndpointName": ENDPOINT})
        endpoint = subject.deploy(request)
        stubber.assert_no_pending_responses()
    assert endpoint.details["endpoint_config"] == serving
    assert "UpdateEndpoint" not in calls and "CreateEndpointConfig" not in calls


@pytest.mark.parametrize(
    ("shift", "routing"),
    [
        ("all_at_once", {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}),
        (
            "canary",
            {
                "Type": "CANARY",
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 20},
                "WaitIntervalInSeconds": 300,
            },
        ),
        (
            "linear",
            {
                "Type": "LINEAR",
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
                "WaitIntervalInSeconds": 300,
            },
        ),
    ],
)
def test_traffic_shifting_reaches_update_endpoint_with_the_rollback_alarms(
    settings: Settings, clients: AwsClients, shift: str, routing: dict[str, Any]
) -> None:
    shifted = dataclasses.replace(
        settings,
        traffic_shift=shift,
        canary_size_percent=20,
        linear_step_percent=25,
        traffic_shift_wait_seconds=300,
        rollback_alarm_names=("skinlesion-test-latency",),
    )
    subject = EndpointDeployer(None, None, None, shifted)
    params = subject.update_request(ENDPOINT, "new-config", ["skinlesion-test-latency"])
    policy = params["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == routing
    assert params["DeploymentConfig"]["AutoRollbackConfiguration"] == {
        "Alarms": [{"AlarmName": "skinlesion-test-latency"}]
    }
    # The service model accepts it (Stubber validates the same way on a real call).
    client = clients.client("sagemaker")
    with Stubber(client) as stubber:
        stubber.add_response("update_endpoint", ARN, params)
        client.update_endpoint(**params)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"traffic_shift": "blue_green"},
            r"Invalid traffic_shift 'blue_green' \(SKINLESION_TRAFFIC_SHIFT\)\. "
            r"Accepted: all_at_once, canary, linear\.",
        ),
        ({"canary_size_percent": 60}, r"Invalid canary_size_percent 60 .*: 1 to 50\."),
        ({"linear_step_percent": 5}, r"Invalid linear_step_percent 5 .*: 10 to 50\."),
        ({"traffic_shift_wait_seconds": 3601}, r"traffic_shift_wait_seconds 3601 .*: 0 to 3600"),
    ],
)
def test_bad_traffic_shift_settings_are_refused_naming_what_is_accepted(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings(region="us-east-1", **values)


def test_traffic_shift_comes_from_the_environment() -> None:
    settings = Settings.from_environment(
        {"SKINLESION_TRAFFIC_SHIFT": "linear", "SKINLESION_LINEAR_STEP_PERCENT": "20"}
    )
    assert (settings.traffic_shift, settings.linear_step_percent) == ("linear", 20)
    assert settings.traffic_shift_waits == 4  # 5 steps of 20 %, a bake between two


@pytest.mark.parametrize(
    ("values", "message"),
    [
        # canary: the bake after the canary step, then the final bake: 600 + 1 x 1200 >= 1800.
        (
            {"traffic_shift": "canary", "traffic_shift_wait_seconds": 1200},
            r"BAKE_SECONDS \(600\) plus the canary shift's 1 x "
            r"SKINLESION_TRAFFIC_SHIFT_WAIT_SECONDS \(1200\) = 1800 s must be shorter than "
            r"SKINLESION_ENDPOINT_TIMEOUT_SECONDS \(1800\)",
        ),
        # linear, 10 % steps: 9 waits between 10 steps: 600 + 9 x 300 = 3300 >= 1800.
        (
            {"traffic_shift": "linear", "linear_step_percent": 10},
            r"linear shift's 9 x .* = 3300 s must be shorter",
        ),
    ],
)
def test_the_shifts_waits_count_against_the_endpoint_timeout_before_any_call(
    settings: Settings, values: dict[str, Any], message: str
) -> None:
    slow = dataclasses.replace(settings, endpoint_timeout_seconds=1800, **values)
    subject = EndpointDeployer(None, None, None, slow)  # any AWS call would fail on None
    with pytest.raises(DeploymentError, match=message):
        subject.deploy(DeployRequest(model_version_arn="arn:none", endpoint_name=ENDPOINT))


def test_a_shift_that_fits_the_timeout_passes_the_check(settings: Settings) -> None:
    fits = dataclasses.replace(
        settings, endpoint_timeout_seconds=1800, traffic_shift="canary"
    )  # 600 + 300 < 1800
    EndpointDeployer(None, None, None, fits).check_timing()
