"""Champion and challenger on SageMaker: two production variants with their weights, each one
scaled on its own, traffic shifted with UpdateEndpointWeightsAndCapacities (moto's server answers
it), and the return to one variant with UpdateEndpoint (moto has no UpdateEndpoint: botocore's
Stubber, every request checked against the service model by Stubber and by our validation)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber
from tests.aws.helpers import offline_client, registered
from tests.aws.test_deployment import (
    CAPTURE,
    ENDPOINT,
    NOW,
    OLD_CONFIG,
    PACKAGE_ARN,
    endpoint_description,
    package,
    scaling,
)

from skinlesion.aws import AwsClients
from skinlesion.backends.base import DeployRequest, Variant
from skinlesion.backends.sagemaker import SageMakerBackend
from skinlesion.backends.sagemaker.deployment import EndpointDeployer
from skinlesion.backends.sagemaker.errors import ModelNotApprovedError, RequestValidationError
from skinlesion.backends.sagemaker.validation import request_problems
from skinlesion.settings import Settings

CHAMPION_RESOURCE = f"endpoint/{ENDPOINT}/variant/AllTraffic"
CHALLENGER_RESOURCE = f"endpoint/{ENDPOINT}/variant/Challenger"


def _approve(backend: SageMakerBackend, clients: AwsClients, arn: str) -> None:
    clients.client("sagemaker").update_model_package(
        ModelPackageArn=arn, ModelApprovalStatus="Approved"
    )


def test_a_challenger_is_a_second_variant_with_its_share_and_its_own_scaling(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    champion = registered(backend, clients, "run-1", 0.75)
    challenger = registered(backend, clients, "run-2", 0.74)  # Pending: not better by the margin
    request = DeployRequest(
        model_version_arn=champion.arn,
        endpoint_name=ENDPOINT,
        max_instances=3,
        challenger_model_version_arn=challenger.arn,
        challenger_traffic_percent=30,
    )
    # A challenger answers real requests: it must be Approved like any deployed version.
    with pytest.raises(ModelNotApprovedError, match="a challenger too"):
        backend.deploy(request)
    _approve(backend, clients, challenger.arn)
    endpoint = backend.deploy(request)
    sagemaker = clients.client("sagemaker")
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=endpoint.details["endpoint_config"]
    )
    variants = config["ProductionVariants"]
    assert [(v["VariantName"], v["InitialVariantWeight"]) for v in variants] == [
        ("AllTraffic", 0.7),
        ("Challenger", 0.3),
    ]
    assert variants[1]["ModelName"] == endpoint.details["challenger_model"]
    assert variants[0]["ModelName"] != variants[1]["ModelName"]
    # Capture is the endpoint's: SageMaker writes each variant under <endpoint>/<variant>/.
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == CAPTURE
    targets, policies = scaling(clients)
    assert sorted((t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets) == [
        (CHAMPION_RESOURCE, 1, 3),
        (CHALLENGER_RESOURCE, 1, 3),
    ]
    assert sorted(p["PolicyName"] for p in policies) == [
        f"{ENDPOINT}-challenger-invocations-per-instance",
        f"{ENDPOINT}-invocations-per-instance",
    ]
    described = backend.describe_variants(ENDPOINT)
    assert [(v.name, v.model_version_arn, v.share) for v in described] == [
        ("AllTraffic", champion.arn, pytest.approx(0.7)),
        ("Challenger", challenger.arn, pytest.approx(0.3)),
    ]
    # Deploying the same pair again changes nothing.
    again = backend.deploy(request)
    assert again.details["endpoint_config"] == endpoint.details["endpoint_config"]
    assert len(sagemaker.list_endpoint_configs()["EndpointConfigs"]) == 1

    # Promotion's first step: half the traffic to the challenger (moto's server answers
    # UpdateEndpointWeightsAndCapacities and keeps the weights in DescribeEndpoint).
    shifted = backend.set_traffic(ENDPOINT, {"AllTraffic": 0.5, "Challenger": 0.5})
    assert [(v.name, v.weight, v.share) for v in shifted] == [
        ("AllTraffic", 0.5, 0.5),
        ("Challenger", 0.5, 0.5),
    ]
    summaries = sagemaker.describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"]
    assert {s["VariantName"]: s["CurrentWeight"] for s in summaries} == {
        "AllTraffic": 0.5,
        "Challenger": 0.5,
    }


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"Nope": 1.0}, "no variant 'Nope'; its variants: \\['AllTraffic', 'Challenger'\\]"),
        ({"Challenger": -0.1}, "Invalid weight -0.1 for Challenger: a finite number >= 0"),
        ({"bad_name": 1.0}, "Invalid variant name 'bad_name'"),
        ({"AllTraffic": 0.0, "Challenger": 0.0}, "would be 0"),
        ({}, "No weights given"),
    ],
)
def test_bad_weights_are_refused_before_the_update(
    backend: SageMakerBackend,
    clients: AwsClients,
    weights: dict[str, float],
    message: str,
) -> None:
    champion = registered(backend, clients, "run-1", 0.75)
    challenger = registered(backend, clients, "run-2", 0.74)
    _approve(backend, clients, challenger.arn)
    backend.deploy(
        DeployRequest(
            model_version_arn=champion.arn,
            endpoint_name=ENDPOINT,
            challenger_model_version_arn=challenger.arn,
            challenger_traffic_percent=10,
        )
    )
    with pytest.raises(ValueError, match=message):
        backend.set_traffic(ENDPOINT, weights)
    summaries = clients.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    assert {s["VariantName"]: s["CurrentWeight"] for s in summaries["ProductionVariants"]} == {
        "AllTraffic": 0.9,
        "Challenger": 0.1,
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"challenger_traffic_percent": 30}, "no challenger_model_version_arn"),
        ({"challenger_model_version_arn": "arn:c", "challenger_traffic_percent": 0}, "1 to 99"),
        ({"challenger_model_version_arn": "arn:c", "challenger_traffic_percent": 100}, "1 to 99"),
        ({"challenger_model_version_arn": PACKAGE_ARN, "challenger_traffic_percent": 5}, "itself"),
    ],
)
def test_bad_challenger_requests_are_refused_before_any_call(
    fields: dict[str, Any], message: str
) -> None:
    client = offline_client("sagemaker")
    deployer = EndpointDeployer(client, None, None, Settings(region="us-east-1"))
    request = DeployRequest(model_version_arn=PACKAGE_ARN, endpoint_name=ENDPOINT, **fields)
    with Stubber(client), pytest.raises(ValueError, match=message):
        deployer.deploy(request)


def test_the_service_model_refuses_what_the_api_reference_refuses() -> None:
    """API reference: DesiredWeightAndCapacity.DesiredWeight >= 0, VariantName's pattern."""
    model = offline_client("sagemaker").meta.service_model
    bad = {
        "EndpointName": ENDPOINT,
        "DesiredWeightsAndCapacities": [{"VariantName": "bad_name", "DesiredWeight": -1.0}],
    }
    problems = " ".join(request_problems(model, "UpdateEndpointWeightsAndCapacities", bad))
    assert "bad_name" in problems and "-1" in problems
    config = {
        "EndpointConfigName": "c",
        "ProductionVariants": [
            {"VariantName": f"v{i}", "ModelName": "m", "InitialInstanceCount": 1,
             "InstanceType": "ml.m5.large", "InitialVariantWeight": 0.1}
            for i in range(11)
        ],
    }  # fmt: skip
    assert request_problems(model, "CreateEndpointConfig", config)  # at most 10 variants
    with pytest.raises(RequestValidationError):
        from skinlesion.backends.sagemaker.validation import validate_request

        validate_request(model, "UpdateEndpointWeightsAndCapacities", bad)


def two_variant_config(name: str) -> dict[str, Any]:
    return {
        "EndpointConfigName": name,
        "EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{name}",
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "ModelName": "m1", "InstanceType": "ml.m5.large"},
            {"VariantName": "Challenger", "ModelName": "m2", "InstanceType": "ml.m5.large"},
        ],
        "CreationTime": NOW,
    }


def test_the_winner_alone_replaces_both_variants_without_guardrails(
    settings: Settings, clients: AwsClients
) -> None:
    """Back to one variant: SageMaker's guardrails need the old config's variant names
    ("Deployment guardrails: Exclusions"), so this UpdateEndpoint carries no DeploymentConfig;
    the challenger leaves auto scaling first. SageMaker is stubbed (moto has no UpdateEndpoint);
    autoscaling is moto's."""
    autoscaling = clients.client("application-autoscaling")
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=CHALLENGER_RESOURCE,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=2,
    )
    sagemaker = offline_client("sagemaker")
    subject = EndpointDeployer(
        sagemaker, autoscaling, clients.client("cloudwatch"), settings, sleep=lambda _: None
    )
    request = DeployRequest(model_version_arn=PACKAGE_ARN, endpoint_name=ENDPOINT)
    config = subject.endpoint_config_request(
        request, subject.model_name(ENDPOINT, package()), CAPTURE
    )
    new_config = str(config["EndpointConfigName"])
    with Stubber(sagemaker) as stubber:
        stubber.add_response("describe_model_package", package(), {"ModelPackageName": PACKAGE_ARN})
        stubber.add_client_error("describe_model", "ValidationException", "Could not find.", 400)
        stubber.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:1:model/m"})
        stubber.add_response(
            "describe_endpoint",
            endpoint_description("InService", OLD_CONFIG),
            {"EndpointName": ENDPOINT},
        )
        stubber.add_client_error(
            "describe_endpoint_config", "ValidationException", "Could not find it.", 400
        )
        stubber.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:endpoint-config/c"},
        )
        stubber.add_response(
            "describe_endpoint_config",
            two_variant_config(OLD_CONFIG),
            {"EndpointConfigName": OLD_CONFIG},
        )
        stubber.add_response(
            "update_endpoint",
            {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/e"},
            {"EndpointName": ENDPOINT, "EndpointConfigName": new_config},
        )
        stubber.add_response(
            "describe_endpoint",
            endpoint_description("InService", new_config),
            {"EndpointName": ENDPOINT},
        )
        endpoint = subject.deploy(request)
        stubber.assert_no_pending_responses()
    assert endpoint.details["variants"] == {"AllTraffic": 1.0}
    assert endpoint.details["rollback_alarms"] == []
    targets, _ = scaling(clients)
    assert [t["ResourceId"] for t in targets] == [CHAMPION_RESOURCE]


def test_variant_records_are_plain_values() -> None:
    variant = Variant("AllTraffic", "arn:x", 0.7, 0.7, 2)
    assert (variant.name, variant.instance_count) == ("AllTraffic", 2)
