"""Endpoints: a Model from an Approved package, an EndpointConfig with data capture, create or
blue/green update with auto-rollback on CloudWatch alarms, InService, target tracking scaling.

Champion and challenger: a deploy that names a challenger serves it as a second production
variant (``Challenger``) beside the champion (``AllTraffic``), each with its InitialVariantWeight;
``set_traffic`` shifts the weights (UpdateEndpointWeightsAndCapacities) and a plain deploy of the
winner returns the endpoint to one variant. Each variant scales on its own
(``endpoint/<name>/variant/<variant>``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from skinlesion.backends.base import (
    CHALLENGER_VARIANT,
    MAX_VARIANTS,
    ApprovalStatus,
    DeployRequest,
    Endpoint,
    Variant,
    check_challenger,
    check_weights,
    variant_shares,
)
from skinlesion.backends.sagemaker.errors import (
    DeploymentError,
    ModelNotApprovedError,
    is_not_found,
)
from skinlesion.backends.sagemaker.instance_storage import has_instance_storage
from skinlesion.backends.sagemaker.naming import check_job_name, digest, resource_name
from skinlesion.backends.sagemaker.validation import validate_request
from skinlesion.settings import Settings

log = logging.getLogger(__name__)

VARIANT = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SCALING_METRIC = "SageMakerVariantInvocationsPerInstance"
BUSY = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
# Only a Failed endpoint serves nothing and may be deleted to be created again; these two may
# still serve traffic (the old fleet), so a person decides.
MAYBE_SERVING = frozenset({"UpdateRollbackFailed", "OutOfService"})
MAX_ROLLBACK_ALARMS = 10
# BlueGreenUpdatePolicy.MaximumExecutionTimeoutInSeconds: 600-28800, and it should exceed
# TerminationWaitInSeconds plus the WaitIntervalInSeconds of the traffic steps (API reference,
# BlueGreenUpdatePolicy).
MAX_EXECUTION_SECONDS = 28800


def invocation_url(region: str, endpoint_name: str) -> str:
    """The HTTPS URL that InvokeEndpoint posts to."""
    return f"https://runtime.sagemaker.{region}.amazonaws.com/endpoints/{endpoint_name}/invocations"


def scaling_resource_id(endpoint_name: str, variant: str = VARIANT) -> str:
    """Application Auto Scaling's id of an endpoint variant."""
    return f"endpoint/{endpoint_name}/variant/{variant}"


class EndpointDeployer:
    """Deploys Approved model packages to real-time endpoints and scales them."""

    def __init__(
        self,
        sagemaker: Any,
        autoscaling: Any,
        cloudwatch: Any,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sagemaker = sagemaker
        self.autoscaling = autoscaling
        self.cloudwatch = cloudwatch
        self.settings = settings
        self.sleep = sleep
        self.clock = clock

    def _call(self, client: Any, operation: str, method: str, **params: Any) -> Any:
        validate_request(client.meta.service_model, operation, params)
        return getattr(client, method)(**params)

    # --- deploy ---------------------------------------------------------------------------
    def deploy(self, request: DeployRequest) -> Endpoint:
        """Serve ``request.model_version_arn`` at ``request.endpoint_name``; return it InService."""
        check_deploy_request(request)
        self.check_timing()
        package = self.approved_package(request.model_version_arn)
        challenger_package = (
            self.approved_package(request.challenger_model_version_arn)
            if request.challenger_model_version_arn
            else None
        )
        model_name = self.ensure_model(request.endpoint_name, package)
        challenger_model = (
            self.ensure_model(request.endpoint_name, challenger_package)
            if challenger_package is not None
            else ""
        )
        capture_uri = request.capture_uri or self.settings.default_capture_uri
        current = self.describe_endpoint(request.endpoint_name)
        if current is not None and current["EndpointStatus"] in BUSY:
            log.info(
                "Endpoint %s is %s; waiting before changing it",
                request.endpoint_name,
                current["EndpointStatus"],
            )
            current = self._wait_settled(request.endpoint_name)
        if current is not None and current["EndpointStatus"] in MAYBE_SERVING:
            raise DeploymentError(
                f"Endpoint {request.endpoint_name} is {current['EndpointStatus']} and may still "
                "serve traffic, so it is not deleted. Look at it in the SageMaker console "
                "(FailureReason: "
                f"{current.get('FailureReason') or 'none given'}); when it is InService again, "
                "run the deploy again; to start over, delete it with `skinlesion endpoint delete "
                f"{request.endpoint_name} --backend sagemaker` and deploy."
            )
        if current is not None and current["EndpointStatus"] == "Failed":
            log.warning(
                "Endpoint %s is %s: deleting it to create it again",
                request.endpoint_name,
                current["EndpointStatus"],
            )
            self.sagemaker.delete_endpoint(EndpointName=request.endpoint_name)
            self._wait_deleted(request.endpoint_name)
            current = None
        alarms: list[str] = []
        if current is not None and self.serves(
            current, request, model_name, capture_uri, challenger_model
        ):
            config_name = str(current["EndpointConfigName"])
            log.info("Endpoint %s already serves %s", request.endpoint_name, config_name)
        else:
            count = fleet_size(request, current)
            config_name = self.ensure_endpoint_config(
                request,
                model_name,
                capture_uri,
                count,
                challenger_model=challenger_model,
                challenger_count=fleet_size(request, current, CHALLENGER_VARIANT),
            )
            try:
                if current is None:
                    self._call(
                        self.sagemaker,
                        "CreateEndpoint",
                        "create_endpoint",
                        EndpointName=request.endpoint_name,
                        EndpointConfigName=config_name,
                        Tags=self.resource_tags(request.model_version_arn),
                    )
                    log.info("Creating endpoint %s with %s", request.endpoint_name, config_name)
                else:
                    alarms = self.update(request, current, config_name)
            except Exception:
                self.restore_autoscaling(request)
                raise
        try:
            final = self.wait_in_service(request.endpoint_name, config_name)
        except Exception:
            # A rolled-back update leaves the old fleet InService: it must scale as before.
            self.restore_autoscaling(request)
            raise
        variants = list(request.variant_weights())
        policy_arns = {name: self.autoscale(request, name) for name in variants}
        return Endpoint(
            name=request.endpoint_name,
            url=invocation_url(self.settings.region, request.endpoint_name),
            status=str(final["EndpointStatus"]),
            model_version_arn=request.model_version_arn,
            capture_uri=capture_uri,
            details={
                "endpoint_arn": final.get("EndpointArn", ""),
                "endpoint_config": config_name,
                "model": model_name,
                "variant": VARIANT,
                "scaling_policy_arn": policy_arns[VARIANT],
                "rollback_alarms": alarms,
                "variants": request.variant_weights(),
                "challenger_model": challenger_model,
                "challenger_model_version_arn": request.challenger_model_version_arn,
                "scaling_policy_arns": policy_arns,
            },
        )

    def approved_package(self, model_version_arn: str) -> Mapping[str, Any]:
        """DescribeModelPackage of an Approved version; ModelNotApprovedError for any other."""
        package: Mapping[str, Any] = self.sagemaker.describe_model_package(
            ModelPackageName=model_version_arn
        )
        status = package.get("ModelApprovalStatus", "")
        if status != ApprovalStatus.APPROVED.value:
            raise ModelNotApprovedError(
                f"Model package {model_version_arn} is {status or 'without a status'}; only "
                "Approved packages are deployed (a challenger too: it answers real requests). "
                "Approve it first (UpdateModelPackage)."
            )
        return package

    def check_timing(self) -> None:
        """Refuse, before any call, a bake time the endpoint timeout cannot wait through."""
        bake = self.settings.blue_green_bake_seconds
        timeout = self.settings.endpoint_timeout_seconds
        waits = self.settings.traffic_shift_waits
        shift = waits * self.settings.traffic_shift_wait_seconds
        total = bake + shift
        if waits:
            spelled = (
                f"SKINLESION_BLUE_GREEN_BAKE_SECONDS ({bake}) plus the {self.settings.traffic_shift} "
                f"shift's {waits} x SKINLESION_TRAFFIC_SHIFT_WAIT_SECONDS "
                f"({self.settings.traffic_shift_wait_seconds}) = {total} s"
            )
            fix = "Raise the timeout, or shorten the bake, the wait or the number of steps."
        else:
            spelled = f"SKINLESION_BLUE_GREEN_BAKE_SECONDS ({bake})"
            fix = "Raise the timeout or shorten the bake."
        if total >= timeout:
            raise DeploymentError(
                f"{spelled} must be shorter than SKINLESION_ENDPOINT_TIMEOUT_SECONDS ({timeout}): "
                f"the deploy step waits through the bake and would give up first. {fix}"
            )
        if total > MAX_EXECUTION_SECONDS - 600:
            raise DeploymentError(
                f"{spelled} leaves no room in SageMaker's MaximumExecutionTimeoutInSeconds "
                f"(at most {MAX_EXECUTION_SECONDS} s, and it must exceed the waits): at most "
                f"{MAX_EXECUTION_SECONDS - 600}."
            )

    def model_name(self, endpoint_name: str, package: Mapping[str, Any]) -> str:
        """The Model's name: endpoint, package version and a hash of what the model is made of."""
        fingerprint = digest(
            package["ModelPackageArn"],
            self.settings.sagemaker_execution_role_arn,
            ",".join(self.settings.subnet_ids),
            ",".join(self.settings.security_group_ids),
            str(self.settings.network_isolation),
            chars=8,
        )
        return resource_name(
            endpoint_name, f"v{package.get('ModelPackageVersion', 0)}", fingerprint
        )

    def ensure_model(self, endpoint_name: str, package: Mapping[str, Any]) -> str:
        """The SageMaker Model of a package, created once."""
        arn = package["ModelPackageArn"]
        name = self.model_name(endpoint_name, package)
        if self._exists(self.sagemaker.describe_model, ModelName=name):
            return name
        params: dict[str, Any] = {
            "ModelName": name,
            "PrimaryContainer": {"ModelPackageName": arn},
            "ExecutionRoleArn": self.settings.sagemaker_execution_role_arn,
            "EnableNetworkIsolation": self.settings.network_isolation,
            "Tags": self.resource_tags(arn),
        }
        if self.settings.subnet_ids:
            params["VpcConfig"] = {
                "SecurityGroupIds": list(self.settings.security_group_ids),
                "Subnets": list(self.settings.subnet_ids),
            }
        self._call(self.sagemaker, "CreateModel", "create_model", **params)
        log.info("Created model %s from %s", name, arn)
        return name

    def endpoint_config_request(
        self,
        request: DeployRequest,
        model_name: str,
        capture_uri: str,
        instance_count: int | None = None,
        *,
        challenger_model: str = "",
        challenger_count: int | None = None,
    ) -> dict[str, Any]:
        """The CreateEndpointConfig request; its name hashes what it serves and ends in the
        champion's fleet size (``-n<count>``), so the same content is reused and recognised at
        any size. With a challenger, a second variant serves it at its share of the requests."""
        count = request.min_instances if instance_count is None else instance_count
        weights = request.variant_weights()
        if len(weights) > 1 and not challenger_model:
            raise ValueError(
                f"The request names a challenger ({request.challenger_model_version_arn}) but "
                "no challenger model was created for it."
            )
        models = {VARIANT: model_name, CHALLENGER_VARIANT: challenger_model}
        counts = {
            VARIANT: count,
            CHALLENGER_VARIANT: request.min_instances
            if challenger_count is None
            else challenger_count,
        }
        variants = [
            {
                "VariantName": name,
                "ModelName": models[name],
                "InitialInstanceCount": counts[name],
                "InstanceType": request.instance_type,
                "InitialVariantWeight": weight,
            }
            for name, weight in weights.items()
        ]
        params: dict[str, Any] = {"ProductionVariants": variants}
        if capture_uri:
            capture: dict[str, Any] = {
                "EnableCapture": True,
                "InitialSamplingPercentage": request.capture_percentage,
                "DestinationS3Uri": capture_uri,
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
            }
            if self.settings.kms_key_arn:
                capture["KmsKeyId"] = self.settings.kms_key_arn
            params["DataCaptureConfig"] = capture
        if self.settings.kms_key_arn:
            if has_instance_storage(request.instance_type):
                log.info(
                    "%s has instance storage, which SageMaker encrypts itself; the endpoint "
                    "config gets no KmsKeyId (CreateEndpointConfig refuses one)",
                    request.instance_type,
                )
            else:
                params["KmsKeyId"] = self.settings.kms_key_arn
        # The fleet size is left out of the hash: autoscaling changes it, the content stays.
        unsized = json.loads(json.dumps(params))
        for variant in unsized["ProductionVariants"]:
            del variant["InitialInstanceCount"]
        fingerprint = digest(json.dumps(unsized, sort_keys=True), chars=8)
        params = {
            "EndpointConfigName": resource_name(request.endpoint_name, fingerprint, f"n{count}"),
            **params,
            "Tags": self.resource_tags(request.model_version_arn),
        }
        return params

    def serves(
        self,
        current: Mapping[str, Any],
        request: DeployRequest,
        model_name: str,
        capture_uri: str,
        challenger_model: str = "",
    ) -> bool:
        """Whether the endpoint's config is the one this request asks for, at whatever size."""
        name = str(current.get("EndpointConfigName", ""))
        size = name.rpartition("-")[2]
        if not (size.startswith("n") and size[1:].isdigit()):
            return False
        wanted = self.endpoint_config_request(
            request, model_name, capture_uri, int(size[1:]), challenger_model=challenger_model
        )
        return name == wanted["EndpointConfigName"]

    def ensure_endpoint_config(
        self,
        request: DeployRequest,
        model_name: str,
        capture_uri: str,
        instance_count: int | None = None,
        *,
        challenger_model: str = "",
        challenger_count: int | None = None,
    ) -> str:
        """Create the endpoint config unless one with the same content exists."""
        params = self.endpoint_config_request(
            request,
            model_name,
            capture_uri,
            instance_count,
            challenger_model=challenger_model,
            challenger_count=challenger_count,
        )
        name = str(params["EndpointConfigName"])
        if not self._exists(self.sagemaker.describe_endpoint_config, EndpointConfigName=name):
            self._call(self.sagemaker, "CreateEndpointConfig", "create_endpoint_config", **params)
            log.info("Created endpoint config %s (capture to %s)", name, capture_uri or "nowhere")
        return name

    def update_request(
        self, endpoint_name: str, config_name: str, alarms: list[str]
    ) -> dict[str, Any]:
        """The UpdateEndpoint request: blue/green (all at once, canary or linear as the settings
        say), baked while the alarms watch."""
        deployment: dict[str, Any] = {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": traffic_routing(self.settings),
                "TerminationWaitInSeconds": self.settings.blue_green_bake_seconds,
                "MaximumExecutionTimeoutInSeconds": max(
                    600, min(MAX_EXECUTION_SECONDS, self.settings.endpoint_timeout_seconds)
                ),
            }
        }
        if alarms:
            deployment["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarms]}
        return {
            "EndpointName": endpoint_name,
            "EndpointConfigName": config_name,
            "RetainAllVariantProperties": False,
            "DeploymentConfig": deployment,
        }

    def update(
        self, request: DeployRequest, current: Mapping[str, Any], config_name: str
    ) -> list[str]:
        """Blue/green update to ``config_name``; returns the alarms that can roll it back."""
        old_config = self.sagemaker.describe_endpoint_config(
            EndpointConfigName=current["EndpointConfigName"]
        )
        old_variants = old_config.get("ProductionVariants", [])
        old_names = {str(v["VariantName"]) for v in old_variants}
        new_names = set(request.variant_weights())
        old_types = {v.get("InstanceType") for v in old_variants}
        for name in sorted(old_names):
            if old_types != {request.instance_type} or name not in new_names:
                # Application Auto Scaling refuses an update that changes a scaled variant's
                # type, and a variant that goes away must leave auto scaling first.
                self.remove_autoscaling(request.endpoint_name, name)
        if old_names != new_names:
            # Deployment guardrails need the new config to have the old one's variant names
            # (SageMaker guide, "Deployment guardrails: Exclusions"); adding or removing the
            # challenger is a plain UpdateEndpoint (all at once, no bake, no alarm rollback).
            params = {"EndpointName": request.endpoint_name, "EndpointConfigName": config_name}
            self._call(self.sagemaker, "UpdateEndpoint", "update_endpoint", **params)
            log.warning(
                "Updating endpoint %s from variants %s to %s: all at once, without the "
                "blue/green bake and alarm rollback (SageMaker's guardrails need the same "
                "variant names)",
                request.endpoint_name,
                sorted(old_names),
                sorted(new_names),
            )
            return []
        alarms = self.rollback_alarms(request.endpoint_name)
        if not alarms:
            log.warning(
                "No CloudWatch alarm watches endpoint %s: the blue/green update cannot roll back "
                "on its own. Create alarms (terraform observability) or set SKINLESION_ROLLBACK_ALARM_NAMES.",
                request.endpoint_name,
            )
        params = self.update_request(request.endpoint_name, config_name, alarms)
        self._call(self.sagemaker, "UpdateEndpoint", "update_endpoint", **params)
        log.info(
            "Updating endpoint %s from %s to %s (blue/green, rollback alarms: %s)",
            request.endpoint_name,
            current["EndpointConfigName"],
            config_name,
            ", ".join(alarms) or "none",
        )
        return alarms

    def rollback_alarms(self, endpoint_name: str) -> list[str]:
        """Alarms on this endpoint's SageMaker metrics, plus the configured ones (at most 10)."""
        names = list(self.settings.rollback_alarm_names)
        paginator = self.cloudwatch.get_paginator("describe_alarms")
        for page in paginator.paginate(AlarmTypes=["MetricAlarm"]):
            for alarm in page.get("MetricAlarms", []):
                dimensions = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
                if (
                    alarm.get("Namespace") == "AWS/SageMaker"
                    and dimensions.get("EndpointName") == endpoint_name
                ):
                    names.append(alarm["AlarmName"])
        unique = list(dict.fromkeys(names))
        if len(unique) > MAX_ROLLBACK_ALARMS:
            log.warning(
                "%d alarms found; SageMaker takes %d: %s",
                len(unique),
                MAX_ROLLBACK_ALARMS,
                unique[MAX_ROLLBACK_ALARMS:],
            )
        return unique[:MAX_ROLLBACK_ALARMS]

    # --- waiting --------------------------------------------------------------------------
    def describe_endpoint(self, name: str) -> Mapping[str, Any] | None:
        """DescribeEndpoint, or None when there is no such endpoint."""
        try:
            description: Mapping[str, Any] = self.sagemaker.describe_endpoint(EndpointName=name)
        except ClientError as error:
            if is_not_found(error):
                return None
            raise
        return description

    def wait_in_service(self, name: str, config_name: str) -> Mapping[str, Any]:
        """Poll until InService on ``config_name``; a rollback or a failure raises DeploymentError."""
        description = self._wait_settled(name)
        if description is None:
            raise DeploymentError(f"Endpoint {name} disappeared while it was being deployed.")
        status = description["EndpointStatus"]
        reason = description.get("FailureReason", "")
        if status != "InService":
            raise DeploymentError(f"Endpoint {name} is {status}: {reason or '(no FailureReason)'}")
        if description["EndpointConfigName"] != config_name:
            raise DeploymentError(
                f"Endpoint {name} was rolled back to {description['EndpointConfigName']} instead of "
                f"serving {config_name}: {reason or 'an alarm fired during the blue/green bake'}"
            )
        log.info("Endpoint %s is InService on %s", name, config_name)
        return description

    def _wait_settled(self, name: str) -> Mapping[str, Any] | None:
        deadline = self.clock() + self.settings.endpoint_timeout_seconds
        last = ""
        while True:
            description = self.describe_endpoint(name)
            if description is None:
                return None
            status = description["EndpointStatus"]
            if status != last:
                log.info("Endpoint %s: %s", name, status)
                last = status
            if status not in BUSY:
                return description
            if self.clock() >= deadline:
                raise DeploymentError(
                    f"Endpoint {name} still {status} after {self.settings.endpoint_timeout_seconds} s; "
                    "raise SKINLESION_ENDPOINT_TIMEOUT_SECONDS to wait longer."
                )
            self.sleep(self.settings.poll_seconds)

    def _wait_deleted(self, name: str) -> None:
        deadline = self.clock() + self.settings.endpoint_timeout_seconds
        while self.describe_endpoint(name) is not None:
            if self.clock() >= deadline:
                raise DeploymentError(f"Endpoint {name} was not deleted within the timeout.")
            self.sleep(self.settings.poll_seconds)

    # --- autoscaling ----------------------------------------------------------------------
    def autoscale(self, request: DeployRequest, variant: str = VARIANT) -> str:
        """Target tracking of one variant on invocations per instance, min to max instances."""
        resource_id = scaling_resource_id(request.endpoint_name, variant)
        self._call(
            self.autoscaling,
            "RegisterScalableTarget",
            "register_scalable_target",
            ServiceNamespace="sagemaker",
            ResourceId=resource_id,
            ScalableDimension=SCALABLE_DIMENSION,
            MinCapacity=request.min_instances,
            MaxCapacity=request.max_instances,
        )
        response = self._call(
            self.autoscaling,
            "PutScalingPolicy",
            "put_scaling_policy",
            **self.scaling_policy_request(request, variant),
        )
        log.info(
            "Endpoint %s variant %s scales %d-%d instances at %d invocations per instance",
            request.endpoint_name,
            variant,
            request.min_instances,
            request.max_instances,
            request.target_invocations_per_instance,
        )
        return str(response.get("PolicyARN", ""))

    def restore_autoscaling(self, request: DeployRequest) -> None:
        """After a failed or rolled-back deploy: scale the endpoint again if it is InService.

        Called while an error propagates, so its own failure is logged, never raised over it.
        """
        try:
            description = self.describe_endpoint(request.endpoint_name)
            if description is None or description["EndpointStatus"] != "InService":
                log.warning(
                    "Endpoint %s is %s: auto scaling not restored; run the deploy again once "
                    "it is InService",
                    request.endpoint_name,
                    "gone" if description is None else description["EndpointStatus"],
                )
                return
            for variant in description.get("ProductionVariants", [{"VariantName": VARIANT}]):
                self.autoscale(request, str(variant["VariantName"]))
            log.info(
                "Endpoint %s serves %s: auto scaling restored",
                request.endpoint_name,
                description["EndpointConfigName"],
            )
        except Exception:
            log.exception("Could not restore auto scaling of endpoint %s", request.endpoint_name)

    def scaling_policy_request(
        self, request: DeployRequest, variant: str = VARIANT
    ) -> dict[str, Any]:
        """The PutScalingPolicy request of an endpoint variant (the champion's keeps its name)."""
        suffix = "" if variant == VARIANT else f"-{variant.lower()}"
        return {
            "PolicyName": f"{request.endpoint_name}{suffix}-invocations-per-instance",
            "ServiceNamespace": "sagemaker",
            "ResourceId": scaling_resource_id(request.endpoint_name, variant),
            "ScalableDimension": SCALABLE_DIMENSION,
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": float(request.target_invocations_per_instance),
                "PredefinedMetricSpecification": {"PredefinedMetricType": SCALING_METRIC},
                "ScaleInCooldown": self.settings.scale_in_cooldown_seconds,
                "ScaleOutCooldown": self.settings.scale_out_cooldown_seconds,
            },
        }

    def remove_autoscaling(self, endpoint_name: str, variant: str = VARIANT) -> None:
        """Delete the variant's scaling policies, then deregister it; nothing registered is fine."""
        resource_id = scaling_resource_id(endpoint_name, variant)
        policies = self.autoscaling.describe_scaling_policies(
            ServiceNamespace="sagemaker",
            ResourceId=resource_id,
            ScalableDimension=SCALABLE_DIMENSION,
        ).get("ScalingPolicies", [])
        for policy in policies:
            self.autoscaling.delete_scaling_policy(
                PolicyName=policy["PolicyName"],
                ServiceNamespace="sagemaker",
                ResourceId=resource_id,
                ScalableDimension=SCALABLE_DIMENSION,
            )
        try:
            self.autoscaling.deregister_scalable_target(
                ServiceNamespace="sagemaker",
                ResourceId=resource_id,
                ScalableDimension=SCALABLE_DIMENSION,
            )
            log.info("Removed endpoint %s variant %s from auto scaling", endpoint_name, variant)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message", "")
            if code != "ObjectNotFoundException" and "No scalable target" not in message:
                raise

    # --- champion and challenger ----------------------------------------------------------
    def describe_variants(self, endpoint_name: str) -> list[Variant]:
        """The endpoint's variants with their current weights and the versions they serve."""
        description = self._wait_settled(endpoint_name)
        if description is None:
            raise DeploymentError(f"No endpoint {endpoint_name}: it has no variants.")
        config = self.sagemaker.describe_endpoint_config(
            EndpointConfigName=description["EndpointConfigName"]
        )
        models = {str(v["VariantName"]): str(v["ModelName"]) for v in config["ProductionVariants"]}
        summaries = description.get("ProductionVariants") or config["ProductionVariants"]
        weights = {
            str(v["VariantName"]): float(v.get("CurrentWeight", v.get("InitialVariantWeight", 0)))
            for v in summaries
        }
        shares = variant_shares(weights)
        variants = []
        for summary in summaries:
            name = str(summary["VariantName"])
            model = self.sagemaker.describe_model(ModelName=models[name])
            count = summary.get("CurrentInstanceCount", summary.get("InitialInstanceCount"))
            variants.append(
                Variant(
                    name=name,
                    model_version_arn=str(
                        model.get("PrimaryContainer", {}).get("ModelPackageName", "")
                    ),
                    weight=weights[name],
                    share=shares[name],
                    instance_count=None if count is None else int(count),
                )
            )
        return sorted(variants, key=lambda v: (v.name != VARIANT, v.name))

    def set_traffic(self, endpoint_name: str, weights: Mapping[str, float]) -> list[Variant]:
        """UpdateEndpointWeightsAndCapacities with the new weights; wait until InService.

        Only weights are sent: a DesiredInstanceCount would fight the variants' auto scaling.
        """
        current = self.describe_variants(endpoint_name)
        checked = check_weights(weights, [v.name for v in current])
        variant_shares({**{v.name: v.weight for v in current}, **checked})  # not all zero
        params = {
            "EndpointName": endpoint_name,
            "DesiredWeightsAndCapacities": [
                {"VariantName": name, "DesiredWeight": weight} for name, weight in checked.items()
            ],
        }
        self._call(
            self.sagemaker,
            "UpdateEndpointWeightsAndCapacities",
            "update_endpoint_weights_and_capacities",
            **params,
        )
        log.info("Endpoint %s: variant weights set to %s", endpoint_name, checked)
        description = self._wait_settled(endpoint_name)
        if description is None or description["EndpointStatus"] != "InService":
            status = "gone" if description is None else description["EndpointStatus"]
            raise DeploymentError(f"Endpoint {endpoint_name} is {status} after the weight change.")
        return self.describe_variants(endpoint_name)

    # --- delete ---------------------------------------------------------------------------
    def delete(self, endpoint_name: str) -> None:
        """Delete the endpoint, its scaling and its config; a missing endpoint is fine."""
        description = self.describe_endpoint(endpoint_name)
        names = {VARIANT} | {
            str(v["VariantName"]) for v in (description or {}).get("ProductionVariants", [])
        }
        for name in sorted(names):
            self.remove_autoscaling(endpoint_name, name)
        if description is None:
            log.info("Endpoint %s does not exist; nothing to delete", endpoint_name)
            return
        self.sagemaker.delete_endpoint(EndpointName=endpoint_name)
        try:
            self.sagemaker.delete_endpoint_config(
                EndpointConfigName=description["EndpointConfigName"]
            )
        except ClientError as error:
            if not is_not_found(error):
                raise
        log.info(
            "Deleted endpoint %s and its config %s",
            endpoint_name,
            description["EndpointConfigName"],
        )

    # --- helpers --------------------------------------------------------------------------
    def _exists(self, describe: Callable[..., Any], **params: str) -> bool:
        try:
            describe(**params)
        except ClientError as error:
            if is_not_found(error):
                return False
            raise
        return True

    def resource_tags(self, model_version_arn: str) -> list[dict[str, str]]:
        return [
            {"Key": "skinlesion:prefix", "Value": self.settings.name_prefix},
            {"Key": "skinlesion:model-package", "Value": model_version_arn[:256]},
        ]


def fleet_size(
    request: DeployRequest, current: Mapping[str, Any] | None, variant: str = VARIANT
) -> int:
    """The new fleet's InitialInstanceCount: the running variant's CurrentInstanceCount, so an
    update does not shrink an endpoint that autoscaling scaled out, clamped to min..max."""
    counts = [
        int(v["CurrentInstanceCount"])
        for v in (current or {}).get("ProductionVariants", [])
        if v.get("VariantName") == variant and v.get("CurrentInstanceCount") is not None
    ]
    if not counts:
        return request.min_instances
    return max(request.min_instances, min(request.max_instances, counts[0]))


def traffic_routing(settings: Settings) -> dict[str, Any]:
    """BlueGreenUpdatePolicy.TrafficRoutingConfiguration of the ``traffic_shift`` setting.

    SageMaker's "Blue/Green deployments" guide: ALL_AT_ONCE shifts every request at once; CANARY
    sends CanarySize of the new fleet traffic first and waits WaitIntervalInSeconds with the
    alarms watching; LINEAR turns LinearStepSize on per step, waiting between steps. A tripped
    alarm in any wait rolls everything back to the old fleet.
    """
    wait = settings.traffic_shift_wait_seconds
    if settings.traffic_shift == "canary":
        return {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": settings.canary_size_percent},
            "WaitIntervalInSeconds": wait,
        }
    if settings.traffic_shift == "linear":
        return {
            "Type": "LINEAR",
            "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": settings.linear_step_percent},
            "WaitIntervalInSeconds": wait,
        }
    return {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}


def check_deploy_request(request: DeployRequest) -> None:
    """Raise ValueError naming the bad field and the accepted range."""
    check_job_name(request.endpoint_name, reserve=0)
    if request.min_instances < 1:
        raise ValueError(f"Invalid min_instances {request.min_instances}: must be >= 1.")
    if request.max_instances < request.min_instances:
        raise ValueError(
            f"Invalid max_instances {request.max_instances}: must be >= min_instances ({request.min_instances})."
        )
    if not 0 <= request.capture_percentage <= 100:
        raise ValueError(f"Invalid capture_percentage {request.capture_percentage}: 0 to 100.")
    if request.target_invocations_per_instance <= 0:
        raise ValueError(
            f"Invalid target_invocations_per_instance {request.target_invocations_per_instance}: must be > 0."
        )
    if not request.instance_type.startswith("ml."):
        raise ValueError(
            f"Invalid instance_type {request.instance_type!r}: a type such as ml.m5.large."
        )
    check_challenger(request)
    if len(request.variant_weights()) > MAX_VARIANTS:  # CreateEndpointConfig: 1-10 variants
        raise ValueError(f"At most {MAX_VARIANTS} production variants per endpoint config.")
