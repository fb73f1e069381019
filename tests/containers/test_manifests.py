"""The kustomize overlays build, validate against Kubernetes' and Kubeflow's schemas, and render."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource
from tests.containers.helpers import MANIFESTS, REPO_ROOT, crd_json_schema, kustomize

from skinlesion.settings import Settings, env_name

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) is not installed"
)

ENVIRONMENTS = {"dev": "skinlesion-dev", "prod": "skinlesion-prod"}
# EKS's supported range when this was written; the strict schemas reject unknown fields.
KUBERNETES_VERSIONS = ("1.31.0", "1.35.0")
CRD_DIR = Path(__file__).parent / "crds"
CRDS = {
    (crd["spec"]["group"], crd["spec"]["names"]["kind"]): crd
    for crd in (yaml.safe_load(p.read_text()) for p in sorted(CRD_DIR.glob("*.yaml")))
}
# The profile controller's AwsIamForServiceAccount plugin reads exactly these fields.
IRSA_PLUGIN_SPEC = {
    "type": "object",
    "required": ["awsIamRole"],
    "additionalProperties": False,
    "properties": {"awsIamRole": {"type": "string"}, "annotateOnly": {"type": "boolean"}},
}
OUTPUTS: dict[str, Any] = {
    "region": "eu-west-1",
    "name_prefix": "skinlesion-dev",
    "data_bucket": "skinlesion-dev-data-123456789012",
    "processed_bucket": "skinlesion-dev-processed-123456789012",
    "models_bucket": "skinlesion-dev-models-123456789012",
    "pipeline_root": "s3://skinlesion-dev-models-123456789012/pipeline-root",
    "capture_bucket": "skinlesion-dev-capture-123456789012",
    "capture_uri": "s3://skinlesion-dev-capture-123456789012/capture",
    "logs_bucket": "skinlesion-dev-logs-123456789012",
    "kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "sagemaker_execution_role_arn": "arn:aws:iam::123456789012:role/skinlesion-dev-sagemaker",
    "kubeflow_irsa_role_arn": "arn:aws:iam::123456789012:role/skinlesion-dev-kubeflow-pipelines",
    "training_image_repository_url": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sl/training",
    "inference_image_repository_url": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sl/inference",
    "pipeline_image_repository_url": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sl/pipeline",
    "model_package_group_name": "skinlesion-dev",
    "sns_topic_arn": "arn:aws:sns:eu-west-1:123456789012:skinlesion-dev-alerts",
    "endpoint_name": "skinlesion-dev",
    "endpoint_alarm_names": ["skinlesion-dev-5xx", "skinlesion-dev-latency"],
    "metrics_namespace": "SkinLesion",
}


def load_render() -> ModuleType:
    path = MANIFESTS / "render.py"
    spec = importlib.util.spec_from_file_location("render", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["render"] = module
    spec.loader.exec_module(module)
    return module


render = load_render()


@pytest.fixture(scope="module", params=sorted(ENVIRONMENTS))
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    env = request.param
    return env, kustomize(MANIFESTS / "overlays" / env)


def terraform_json(outputs: dict[str, Any]) -> dict[str, Any]:
    """What `terraform output -json` writes."""
    return {
        name: {
            "sensitive": False,
            "type": "string" if isinstance(v, str) else ["list", "string"],
            "value": v,
        }
        for name, v in outputs.items()
    }


# --- validation ---------------------------------------------------------------------------------


def core_validator(version: str, definition: str) -> jsonschema.protocols.Validator:
    """A validator for one Kubernetes definition (ObjectMeta, EnvVar, Volume, ...), strict."""
    folder = (
        resources.files(kubernetes_validate) / "kubernetes-json-schema" / f"v{version}-local-strict"
    )
    definitions = json.loads((folder / "_definitions.json").read_text())
    registry: Registry[Any] = Registry().with_resource(
        definitions["$id"], Resource.from_contents(definitions)
    )
    ref = f"{definitions['$id']}#/$defs/io.k8s.{definition}"
    return jsonschema.Draft202012Validator({"$ref": ref}, registry=registry)


# PodDefault fields whose items are core Kubernetes types (the CRD leaves them open).
POD_DEFAULT_CORE_TYPES = {
    "env": "api.core.v1.EnvVar",
    "volumes": "api.core.v1.Volume",
    "volumeMounts": "api.core.v1.VolumeMount",
}


def validate(obj: dict[str, Any]) -> None:
    """Kubernetes' own schemas for built-in kinds; the CRD fixtures for Kubeflow's kinds."""
    group = obj["apiVersion"].rpartition("/")[0]
    crd = CRDS.get((group, obj["kind"]))
    for version in KUBERNETES_VERSIONS:
        if crd is None:
            kubernetes_validate.validate(obj, version, strict=True)
            continue
        core_validator(version, "apimachinery.pkg.apis.meta.v1.ObjectMeta").validate(
            obj["metadata"]
        )
        if obj["kind"] == "PodDefault":
            for key, definition in POD_DEFAULT_CORE_TYPES.items():
                for item in obj["spec"].get(key, []):
                    core_validator(version, definition).validate(item)
    if crd is not None:
        served = obj["apiVersion"].rpartition("/")[2]
        jsonschema.Draft202012Validator(crd_json_schema(crd, served)).validate(obj)
        if crd["spec"]["scope"] == "Cluster":
            assert "namespace" not in obj["metadata"], f"{obj['kind']} is cluster-scoped"
    if obj["kind"] == "Profile":
        for plugin in obj["spec"].get("plugins", []):
            if plugin["kind"] == "AwsIamForServiceAccount":
                jsonschema.Draft202012Validator(IRSA_PLUGIN_SPEC).validate(plugin["spec"])


def test_crd_fixtures_are_valid_crds() -> None:
    assert set(CRDS) == {("kubeflow.org", "Profile"), ("kubeflow.org", "PodDefault")}
    for crd in CRDS.values():
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(crd, version, strict=True)


def test_validation_rejects_what_the_schemas_forbid(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    # The gate only counts if it can fail: a misspelt field in each kind must be caught.
    _, objects = overlay
    for obj in objects:
        broken = copy.deepcopy(obj)
        section = next((k for k in ("spec", "data") if k in broken), None)
        if section is None:  # ServiceAccount, RoleBinding: fields at the top level
            broken["misspelt"] = {"x": 1}
        else:
            broken[section]["misspelt"] = {"x": 1}
        with pytest.raises(jsonschema.ValidationError):
            validate(broken)
    profile = copy.deepcopy(next(o for o in objects if o["kind"] == "Profile"))
    profile["spec"]["resourceQuotaSpec"]["hard"]["requests.cpu"] = "eight"
    with pytest.raises(jsonschema.ValidationError):
        validate(profile)
    profile = copy.deepcopy(next(o for o in objects if o["kind"] == "Profile"))
    profile["spec"]["plugins"] = [
        {"kind": "AwsIamForServiceAccount", "spec": {"awsIamRoleArn": "t"}}
    ]
    with pytest.raises(jsonschema.ValidationError):
        validate(profile)
    access = copy.deepcopy(
        next(o for o in objects if o["metadata"]["name"] == "access-ml-pipeline")
    )
    access["spec"]["volumeMounts"][0]["mountpath"] = access["spec"]["volumeMounts"][0].pop(
        "mountPath"
    )
    with pytest.raises(jsonschema.ValidationError):
        validate(access)


def test_overlay_objects_validate(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    env, objects = overlay
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    assert kinds == [
        "ConfigMap/skinlesion-settings",
        "LimitRange/skinlesion-defaults",
        "PodDefault/access-ml-pipeline",
        "PodDefault/skinlesion-settings",
        f"Profile/{ENVIRONMENTS[env]}",
        "RoleBinding/skinlesion-pipeline-runner-edit",
        "ServiceAccount/skinlesion-pipeline-runner",
    ]
    for obj in objects:
        validate(obj)


def test_every_namespaced_object_lives_in_the_profiles_namespace(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    env, objects = overlay
    for obj in objects:
        if obj["kind"] != "Profile":
            assert obj["metadata"]["namespace"] == ENVIRONMENTS[env], obj["metadata"]
        assert obj["metadata"]["labels"]["skinlesion/environment"] == env


def test_the_pipeline_runner_has_the_aws_role_and_default_editors_rights(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    env, objects = overlay
    namespace = ENVIRONMENTS[env]
    profile = next(o for o in objects if o["kind"] == "Profile")
    # default-editor, which every notebook of the namespace shares, gets no AWS role.
    assert not [
        p for p in profile["spec"].get("plugins", []) if p["kind"] == "AwsIamForServiceAccount"
    ]
    account = next(o for o in objects if o["kind"] == "ServiceAccount")
    assert account["metadata"]["name"] == "skinlesion-pipeline-runner"
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": ""
    }  # make manifests
    [binding] = [o for o in objects if o["kind"] == "RoleBinding"]
    # The ClusterRole the profile controller binds default-editor to in a profile namespace.
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "kubeflow-edit",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "skinlesion-pipeline-runner", "namespace": namespace}
    ]
    # The params files run the pipelines as this account.
    for params in (REPO_ROOT / "pipelines" / "params" / f"{env}.yaml",):
        assert (
            yaml.safe_load(params.read_text())["kubeflow"]["service_account"]
            == (account["metadata"]["name"])
        )
    # The token PodDefault selects pods by label, whatever their service account: the trigger
    # step's pod (label access-ml-pipeline=true) gets this account's token for the KFP API.
    access = next(o for o in objects if o["metadata"]["name"] == "access-ml-pipeline")
    assert access["spec"]["selector"] == {"matchLabels": {"access-ml-pipeline": "true"}}


def test_settings_configmap_speaks_settings_py(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    data = next(o for o in objects if o["metadata"]["name"] == "skinlesion-settings")["data"]
    names = {env_name(f.name): f for f in dataclasses.fields(Settings)}
    from skinlesion.kubeflow.tasks import EXTRA_SETTINGS_ENV

    unknown = sorted(set(data) - set(names) - set(EXTRA_SETTINGS_ENV))
    assert not unknown, f"not settings in skinlesion/settings.py: {unknown}"
    terraform = {n for n, f in names.items() if f.metadata.get("terraform")}
    assert sorted(terraform - set(data)) == [], "every Terraform-owned setting has its key"
    assert all(data[name] == "" for name in terraform), "Terraform values come from make manifests"
    Settings.from_environment(data)  # the rest parses as the steps will parse it


def test_poddefault_injects_the_settings(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    pod_default = next(
        o
        for o in objects
        if o["metadata"]["name"] == "skinlesion-settings" and o["kind"] == "PodDefault"
    )
    assert pod_default["spec"]["envFrom"] == [{"configMapRef": {"name": "skinlesion-settings"}}]
    assert pod_default["spec"]["selector"] == {"matchLabels": {"skinlesion/settings": "true"}}


def test_quota_comes_with_container_defaults(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    # A quota on requests/limits rejects pods without them unless a LimitRange fills them in.
    _, objects = overlay
    hard = next(o for o in objects if o["kind"] == "Profile")["spec"]["resourceQuotaSpec"]["hard"]
    limits = next(o for o in objects if o["kind"] == "LimitRange")["spec"]["limits"]
    container = next(item for item in limits if item["type"] == "Container")
    for key in hard:
        kind, _, resource = key.partition(".")
        if kind == "requests" and resource in ("cpu", "memory"):
            assert resource in container["defaultRequest"], key
        if kind == "limits":
            assert resource in container["default"], key


def test_no_kfp_launcher_configmap_of_ours(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    """KFP's profile controller writes kfp-launcher in every profile namespace
    (manifests/kustomize/base/installs/multi-user/pipelines-profile-controller/sync.py); a copy
    of ours would be overwritten or fight it. docs/deploy.md says how to set the root there."""
    _, objects = overlay
    assert not [o for o in objects if o["metadata"]["name"] == "kfp-launcher"]
    assert not (MANIFESTS / "base" / "kfp-launcher.yaml").exists()


# --- pod sizes against the LimitRange -------------------------------------------------------------

_SUFFIXES = {
    "m": Decimal("0.001"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
}


def quantity(text: str | int | float) -> Decimal:
    """A Kubernetes quantity ("250m", "2", "512Mi", "16Gi") as a number."""
    match = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti|)", str(text))
    assert match, f"not a quantity this test knows: {text!r}"
    return Decimal(match[1]) * _SUFFIXES[match[2]]


# PipelineTask setters -> the compiled container's resources fields (kfp 2.17).
RESOURCE_FIELDS = {
    "cpu": ("resourceCpuRequest", "resourceCpuLimit"),
    "memory": ("resourceMemoryRequest", "resourceMemoryLimit"),
}


def _compiled_pods(jobs_in_pod: bool) -> dict[str, dict[str, dict[str, Decimal]]]:
    """executor -> {"requests": {...}, "limits": {...}} of every pipeline, compiled."""
    from skinlesion.kubeflow.compiling import CompileOptions, compile_pipeline
    from skinlesion.kubeflow.discovery import discover_pipelines

    pods: dict[str, dict[str, dict[str, Decimal]]] = {}
    for name, entry in discover_pipelines(REPO_ROOT / "pipelines").items():
        compiled = compile_pipeline(entry, CompileOptions(jobs_in_pod=jobs_in_pod))
        spec = next(yaml.safe_load_all(compiled.text))
        for label, executor in spec["deploymentSpec"]["executors"].items():
            declared = executor.get("container", {}).get("resources", {})
            pods[f"{name}/{label}"] = {
                kind: {
                    resource: quantity(declared[fields[index]])
                    for resource, fields in RESOURCE_FIELDS.items()
                    if fields[index] in declared
                }
                for index, kind in enumerate(("requests", "limits"))
            }
    return pods


@pytest.mark.parametrize("jobs_in_pod", [False, True], ids=["sagemaker", "jobs-in-pod"])
def test_every_compiled_pod_fits_the_limitrange_and_the_quota(
    overlay: tuple[str, list[dict[str, Any]]], jobs_in_pod: bool
) -> None:
    """A container over the LimitRange's max is refused at admission (the pod never starts)."""
    _, objects = overlay
    container = next(
        item
        for item in next(o for o in objects if o["kind"] == "LimitRange")["spec"]["limits"]
        if item["type"] == "Container"
    )
    maximum = {k: quantity(v) for k, v in container["max"].items()}
    default_limit = {k: quantity(v) for k, v in container["default"].items()}
    default_request = {k: quantity(v) for k, v in container["defaultRequest"].items()}
    hard = next(o for o in objects if o["kind"] == "Profile")["spec"]["resourceQuotaSpec"]["hard"]
    pods = _compiled_pods(jobs_in_pod)
    assert pods
    largest: dict[str, Decimal] = {}
    for pod, declared in pods.items():
        for resource in ("cpu", "memory", "ephemeral-storage"):
            # What admission leaves on the container: its own value, else the LimitRange default.
            limit = declared["limits"].get(resource, default_limit[resource])
            request = declared["requests"].get(resource, min(default_request[resource], limit))
            assert request <= limit, (pod, resource)
            assert limit <= maximum[resource], f"{pod}: {resource} limit {limit} > max"
            largest[resource] = max(largest.get(resource, Decimal(0)), limit)
            quota = hard.get(f"limits.{resource}")
            if quota is not None:
                assert limit <= quantity(quota), (pod, resource)
            quota = hard.get(f"requests.{resource}")
            if quota is not None:
                assert request <= quantity(quota), (pod, resource)
    if jobs_in_pod:
        from skinlesion.kubeflow.tasks import IN_POD_JOB_RESOURCES

        assert largest["memory"] == quantity(IN_POD_JOB_RESOURCES.memory_limit)


def test_every_container_gets_an_ephemeral_storage_request_and_limit(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    """kfp 2.17's PipelineTask cannot set ephemeral storage, so the namespace's LimitRange
    defaults it for every container (LimitRange defaults apply per resource)."""
    from kfp import dsl

    assert not [m for m in dir(dsl.PipelineTask) if "ephemeral" in m or "storage" in m]
    _, objects = overlay
    limits = next(o for o in objects if o["kind"] == "LimitRange")["spec"]["limits"]
    container = next(item for item in limits if item["type"] == "Container")
    request = quantity(container["defaultRequest"]["ephemeral-storage"])
    limit = quantity(container["default"]["ephemeral-storage"])
    assert 0 < request <= limit <= quantity(container["max"]["ephemeral-storage"])
    # No compiled task sets it itself, so the default is what every pod gets.
    assert not any(
        "ephemeral-storage" in kind
        for pod in _compiled_pods(False).values()
        for kind in pod.values()
    )


# --- make manifests --------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["terraform", "flat"])
@pytest.mark.parametrize("env", sorted(ENVIRONMENTS))
def test_render_fills_every_terraform_value(tmp_path: Path, env: str, form: str) -> None:
    outputs_file = tmp_path / "outputs.json"
    outputs = dict(OUTPUTS, kubeflow_namespace=ENVIRONMENTS[env])
    outputs_file.write_text(json.dumps(terraform_json(outputs) if form == "terraform" else outputs))
    manifest = render.render(
        env, outputs_file, tmp_path / "out", image_tag="0123abcd", owner="owner@example.org"
    )
    objects = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    for obj in objects:
        validate(obj)
    profile = next(o for o in objects if o["kind"] == "Profile")
    assert profile["metadata"]["name"] == ENVIRONMENTS[env]
    assert profile["spec"]["owner"] == {"kind": "User", "name": "owner@example.org"}
    account = next(o for o in objects if o["kind"] == "ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": OUTPUTS["kubeflow_irsa_role_arn"]
    }
    # The halves of make manifests-apply: the Profile, then everything in its namespace.
    out = tmp_path / "out"
    first = [d for d in yaml.safe_load_all((out / f"{env}.profile.yaml").read_text()) if d]
    second = [d for d in yaml.safe_load_all((out / f"{env}.resources.yaml").read_text()) if d]
    assert first == [profile]
    assert sorted(map(str, first + second)) == sorted(map(str, objects))
    assert all(o["metadata"]["namespace"] == ENVIRONMENTS[env] for o in second)
    assert (out / f"{env}.namespace").read_text() == ENVIRONMENTS[env] + "\n"
    data = next(o for o in objects if o["metadata"]["name"] == "skinlesion-settings")["data"]
    settings = Settings.from_environment(data)
    assert settings.training_image_uri == OUTPUTS["training_image_repository_url"] + ":0123abcd"
    assert settings.inference_image_uri == OUTPUTS["inference_image_repository_url"] + ":0123abcd"
    assert settings.sagemaker_execution_role_arn == OUTPUTS["sagemaker_execution_role_arn"]
    assert settings.kms_key_arn == OUTPUTS["kms_key_arn"]
    assert settings.pipeline_root == OUTPUTS["pipeline_root"]
    # The overlay's own choices survive the render.
    expected_type = {"dev": "ml.g4dn.xlarge", "prod": "ml.g5.xlarge"}[env]
    assert settings.training_instance_type == expected_type
    # The generated overlay applies as it is, too (kubectl apply -k).
    assert kustomize(tmp_path / "out" / env) == objects


def test_render_refuses_incomplete_manifests(tmp_path: Path) -> None:
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(OUTPUTS))
    with pytest.raises(render.RenderError, match="PROFILE_OWNER"):
        render.render("dev", outputs_file, tmp_path / "out", image_tag="t")
    with pytest.raises(
        render.RenderError, match=re.escape("Unknown environment 'staging'. Accepted: dev, prod.")
    ):
        render.render("staging", outputs_file, tmp_path / "out", image_tag="t", owner="o@x.org")
    outputs_file.write_text(json.dumps(dict(OUTPUTS, kubeflow_namespace="kubeflow-user")))
    with pytest.raises(render.RenderError, match="trusts namespace 'kubeflow-user'"):
        render.render("dev", outputs_file, tmp_path / "out", image_tag="t", owner="o@x.org")
    incomplete = {k: v for k, v in OUTPUTS.items() if k != "kubeflow_irsa_role_arn"}
    outputs_file.write_text(json.dumps(incomplete))
    with pytest.raises(render.RenderError, match="lack kubeflow_irsa_role_arn"):
        render.render("dev", outputs_file, tmp_path / "out", image_tag="t", owner="o@x.org")
    outputs_file.write_text(json.dumps({k: v for k, v in OUTPUTS.items() if k != "models_bucket"}))
    with pytest.raises(render.RenderError, match="models_bucket"):
        render.render("dev", outputs_file, tmp_path / "out", image_tag="t", owner="o@x.org")
    outputs_file.write_text(json.dumps(dict(OUTPUTS, kubeflow_irsa_role_arn="skinlesion-role")))
    with pytest.raises(render.RenderError, match="is not an IAM role ARN"):
        render.render("dev", outputs_file, tmp_path / "out", image_tag="t", owner="o@x.org")


def test_render_refuses_what_fights_kubeflow(
    tmp_path: Path, overlay: tuple[str, list[dict[str, Any]]]
) -> None:
    env, _ = overlay
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(dict(OUTPUTS, kubeflow_namespace=ENVIRONMENTS[env])))
    manifest = render.render(env, outputs_file, tmp_path / "out", image_tag="t", owner="o@x.org")
    rendered = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    render.check_rendered(rendered)
    launcher = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "kfp-launcher", "namespace": ENVIRONMENTS[env]},
        "data": {"defaultPipelineRoot": OUTPUTS["pipeline_root"]},
    }
    with pytest.raises(render.RenderError, match="belongs to KFP's profile controller"):
        render.check_rendered([*rendered, launcher])
    plugin = copy.deepcopy(rendered)
    next(o for o in plugin if o["kind"] == "Profile")["spec"]["plugins"] = [
        {
            "kind": "AwsIamForServiceAccount",
            "spec": {"awsIamRole": OUTPUTS["kubeflow_irsa_role_arn"]},
        }
    ]
    with pytest.raises(render.RenderError, match="would give default-editor"):
        render.check_rendered(plugin)
    unbound = [o for o in rendered if o["kind"] != "RoleBinding"]
    with pytest.raises(render.RenderError, match="no RoleBinding of skinlesion-pipeline-runner"):
        render.check_rendered(unbound)
    outputs_file.write_text(json.dumps(dict(OUTPUTS, kubeflow_service_account="default-editor")))
    with pytest.raises(render.RenderError, match="trusts service account 'default-editor'"):
        render.render(env, outputs_file, tmp_path / "out2", image_tag="t", owner="o@x.org")


def test_render_command_line(tmp_path: Path) -> None:
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(terraform_json(OUTPUTS)))
    command = [sys.executable, str(MANIFESTS / "render.py"), "--env", "prod", "--outputs",
               str(outputs_file), "--out", str(tmp_path / "out"), "--image-tag", "abc"]  # fmt: skip
    failed = subprocess.run(command, capture_output=True, text=True, check=False)
    assert failed.returncode == 2 and "PROFILE_OWNER" in failed.stderr
    done = subprocess.run(
        [*command, "--owner", "o@x.org"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "prod.yaml").is_file()


# --- yamllint --------------------------------------------------------------------------------------


def yamllint(*paths: Path | str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("yamllint") or str(REPO_ROOT / ".venv" / "bin" / "yamllint")
    return subprocess.run(
        [binary, "--strict", *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )


def test_yamllint_is_clean_on_manifests_params_and_workflows() -> None:
    targets = [REPO_ROOT / "manifests", REPO_ROOT / ".github", CRD_DIR]
    params = REPO_ROOT / "pipelines" / "params"
    if params.is_dir():
        targets.append(params)
    result = yamllint(*targets)
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_config_is_in_force(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("key: value   \nlist:\n- a\n-  b\nkey: again\n")
    result = yamllint(bad)
    assert result.returncode != 0
    assert "trailing-spaces" in result.stdout and "key-duplicates" in result.stdout


def test_the_settings_configmap_carries_every_key_the_pipeline_pods_reference() -> None:
    """KFP before 2.15 cannot mark a ConfigMap key optional: a missing key fails the pod."""
    import yaml as _yaml

    from skinlesion.kubeflow.tasks import settings_env

    data = _yaml.safe_load(
        (Path(__file__).parents[2] / "manifests/base/settings.yaml").read_text()
    )["data"]
    assert sorted(set(settings_env()) - set(data)) == []
