#!/usr/bin/env python3
"""Render a kustomize overlay with Terraform's outputs: what ``make manifests ENV=<env>`` runs.

The committed overlays leave every value that Terraform owns empty (the IRSA role, the buckets,
the image repositories, ...). This script builds the overlay once to learn its namespace, writes
``<out>/<env>/kustomization.yaml`` (the overlay plus patches that fill those values from
``terraform output -json``), builds that into ``<out>/<env>.yaml`` and refuses to write a
manifest in which a value is still missing. It also writes the two halves that
``make manifests-apply`` applies one after the other: ``<out>/<env>.profile.yaml`` (the Profile,
from which Kubeflow's profile controller creates the namespace), ``<out>/<env>.resources.yaml``
(everything that lives in that namespace) and ``<out>/<env>.namespace`` (its name), because a
single ``kubectl apply`` fails on the namespaced objects while the namespace does not exist yet.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from skinlesion.settings import (
    Settings,
    SettingsError,
    env_name,
    load_terraform_outputs,
    terraform_values,
)

MANIFESTS = Path(__file__).resolve().parent
SETTINGS_CONFIGMAP = "skinlesion-settings"
# KFP's profile controller owns this ConfigMap in every profile namespace (sync.py of
# pipelines-profile-controller): a manifest of ours must not carry it.
LAUNCHER_CONFIGMAP = "kfp-launcher"
# A Profile plugin that would annotate default-editor (shared by the namespace's notebooks).
IRSA_PLUGIN = "AwsIamForServiceAccount"
RUNNER_SERVICE_ACCOUNT = "skinlesion-pipeline-runner"
RUNNER_CLUSTER_ROLE = "kubeflow-edit"  # what the profile controller binds default-editor to
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
IMAGE_TAG_VARIABLE = env_name("image_tag")
IAM_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+")
# What a namespace cannot run the pipeline without (Settings field names).
REQUIRED_SETTINGS = (
    "region",
    "models_bucket",
    "pipeline_root",
    "sagemaker_execution_role_arn",
    "training_image_repository_url",
    "inference_image_repository_url",
    "model_package_group_name",
)

log = logging.getLogger("skinlesion.manifests")


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (patches, the launcher's providers) as readable YAML blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def dump(value: Any) -> str:
    """YAML with the keys in their given order and multi-line strings as blocks."""
    return yaml.dump(value, Dumper=_BlockDumper, sort_keys=False)


class RenderError(ValueError):
    """The overlay or the outputs cannot make a complete manifest; the message says what to fix."""


def kustomize(directory: Path, kubectl: str = "kubectl") -> list[dict[str, Any]]:
    """``kubectl kustomize <directory>`` as a list of objects."""
    if shutil.which(kubectl) is None:
        raise RenderError(f"{kubectl} is not on PATH; kubectl >= 1.27 renders the overlays.")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory} failed:\n{result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(
    objects: Sequence[Mapping[str, Any]], kind: str, name: str | None = None
) -> dict[str, Any]:
    """The one object of ``kind`` (and ``name``); an error names what the overlay holds instead."""
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    if len(found) != 1:
        held = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
        wanted = f"{kind}/{name}" if name else kind
        raise RenderError(
            f"Expected exactly one {wanted} in the overlay, found {len(found)}: {held}."
        )
    return dict(found[0])


def settings_data(outputs: Mapping[str, Any], image_tag: str) -> dict[str, str]:
    """The ConfigMap entries that Terraform's outputs and the image tag provide."""
    values = terraform_values(outputs)  # typed and validated the way the steps will read them
    data: dict[str, str] = {}
    for field in dataclasses.fields(Settings):
        if field.metadata.get("terraform") and field.name in values:
            value = values[field.name]
            data[env_name(field.name)] = (
                json.dumps(list(value)) if isinstance(value, tuple) else str(value)
            )
    data[IMAGE_TAG_VARIABLE] = image_tag
    return data


def overlay_patches(
    built: Sequence[Mapping[str, Any]],
    outputs: Mapping[str, Any],
    *,
    image_tag: str,
    owner: str = "",
) -> list[dict[str, Any]]:
    """Kustomize patches that fill the overlay's empty values from the outputs."""
    profile = find(built, "Profile")
    namespace = profile["metadata"]["name"]
    terraform_namespace = outputs.get("kubeflow_namespace")
    if terraform_namespace and terraform_namespace != namespace:
        raise RenderError(
            f"Terraform's IRSA role trusts namespace {terraform_namespace!r} but the overlay's "
            f"Profile is {namespace!r}; make terraform's kubeflow_namespace and the overlay agree."
        )
    missing = [
        n for n in ("kubeflow_irsa_role_arn", "region", "pipeline_root") if not outputs.get(n)
    ]
    if missing:
        raise RenderError(
            f"Terraform outputs lack {', '.join(missing)}; run `make tf-outputs ENV=<env>` after "
            "`make tf-apply`."
        )
    terraform_account = outputs.get("kubeflow_service_account")
    if terraform_account and terraform_account != RUNNER_SERVICE_ACCOUNT:
        raise RenderError(
            f"Terraform's IRSA role trusts service account {terraform_account!r} but the "
            f"pipelines run as {RUNNER_SERVICE_ACCOUNT!r}; make the two agree."
        )
    find(built, "ServiceAccount", RUNNER_SERVICE_ACCOUNT)  # the overlay must have it
    patches: list[dict[str, Any]] = []
    if owner:
        patches.append(
            {
                "target": {"kind": "Profile", "name": namespace},
                "patch": dump([{"op": "replace", "path": "/spec/owner/name", "value": owner}]),
            }
        )

    def namespaced(kind: str, name: str, **fields: Any) -> str:
        return dump(
            {
                "apiVersion": "v1",
                "kind": kind,
                "metadata": {"name": name, "namespace": namespace, **fields.pop("metadata", {})},
                **fields,
            }
        )

    patches.append(
        {
            "patch": namespaced(
                "ServiceAccount",
                RUNNER_SERVICE_ACCOUNT,
                metadata={"annotations": {IRSA_ANNOTATION: outputs["kubeflow_irsa_role_arn"]}},
            )
        }
    )
    patches.append(
        {
            "patch": namespaced(
                "ConfigMap", SETTINGS_CONFIGMAP, data=settings_data(outputs, image_tag)
            )
        }
    )
    return patches


def check_rendered(objects: Sequence[Mapping[str, Any]]) -> None:
    """Raise one error that lists every value a deployable manifest still lacks."""
    problems: list[str] = []
    profile = find(objects, "Profile")
    if not profile["spec"]["owner"].get("name"):
        problems.append("Profile owner (make manifests PROFILE_OWNER=<user email>)")
    if any(p.get("kind") == IRSA_PLUGIN for p in profile["spec"].get("plugins") or []):
        problems.append(
            f"the Profile's {IRSA_PLUGIN} plugin would give default-editor (every notebook of the "
            f"namespace) the pipeline's AWS role; {RUNNER_SERVICE_ACCOUNT} carries it instead"
        )
    if any(
        o["kind"] == "ConfigMap" and o["metadata"]["name"] == LAUNCHER_CONFIGMAP for o in objects
    ):
        problems.append(
            f"ConfigMap {LAUNCHER_CONFIGMAP} belongs to KFP's profile controller (docs/deploy.md: "
            "the default pipeline root); remove it from the overlay"
        )
    account = find(objects, "ServiceAccount", RUNNER_SERVICE_ACCOUNT)
    role = (account["metadata"].get("annotations") or {}).get(IRSA_ANNOTATION, "")
    if not IAM_ROLE_ARN.fullmatch(role):
        problems.append(
            f"{RUNNER_SERVICE_ACCOUNT} {IRSA_ANNOTATION} {role!r} is not an IAM role ARN"
        )
    namespace = profile["metadata"]["name"]
    bound = [
        o
        for o in objects
        if o["kind"] == "RoleBinding"
        and o["roleRef"]
        == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": RUNNER_CLUSTER_ROLE,
        }
        and {"kind": "ServiceAccount", "name": RUNNER_SERVICE_ACCOUNT, "namespace": namespace}
        in o.get("subjects", [])
    ]
    if not bound:
        problems.append(
            f"no RoleBinding of {RUNNER_SERVICE_ACCOUNT} in {namespace} to ClusterRole "
            f"{RUNNER_CLUSTER_ROLE} (the rights default-editor has to run pipeline pods)"
        )
    data = find(objects, "ConfigMap", SETTINGS_CONFIGMAP)["data"]
    if not data.get(IMAGE_TAG_VARIABLE):
        problems.append(f"{IMAGE_TAG_VARIABLE} (make manifests IMAGE_TAG=<tag pushed>)")
    try:
        Settings.from_environment(data).require(*REQUIRED_SETTINGS)
    except SettingsError as error:
        problems.append(str(error))
    if problems:
        raise RenderError("The rendered manifest is not deployable: " + "; ".join(problems))


def render(
    env: str,
    outputs_file: Path,
    out_dir: Path,
    *,
    image_tag: str,
    owner: str = "",
    kubectl: str = "kubectl",
    overlays: Path = MANIFESTS / "overlays",
) -> Path:
    """Write ``<out_dir>/<env>/kustomization.yaml`` and ``<out_dir>/<env>.yaml``; return the latter."""
    overlay = overlays / env
    if not (overlay / "kustomization.yaml").is_file():
        accepted = sorted(
            p.name for p in overlays.iterdir() if (p / "kustomization.yaml").is_file()
        )
        raise RenderError(f"Unknown environment {env!r}. Accepted: {', '.join(accepted)}.")
    if not image_tag:
        raise RenderError("No image tag: pass the tag that `make push` pushed (IMAGE_TAG).")
    try:
        outputs = load_terraform_outputs(outputs_file)
    except SettingsError as error:
        raise RenderError(str(error)) from None
    patches = overlay_patches(
        kustomize(overlay, kubectl), outputs, image_tag=image_tag, owner=owner
    )
    generated = out_dir / env
    generated.mkdir(parents=True, exist_ok=True)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(overlay.resolve(), generated.resolve())],
        "patches": patches,
    }
    header = (
        f"# Generated by manifests/render.py from {outputs_file} (image tag {image_tag}); "
        "do not edit.\n"
    )
    (generated / "kustomization.yaml").write_text(header + dump(kustomization))
    objects = kustomize(generated, kubectl)
    check_rendered(objects)
    manifest = out_dir / f"{env}.yaml"
    manifest.write_text(header + dump_all(objects))
    # The halves of `make manifests-apply`: the Profile first, the rest once its namespace exists.
    profile = [o for o in objects if o["kind"] == "Profile"]
    (out_dir / f"{env}.profile.yaml").write_text(header + dump_all(profile))
    rest = [o for o in objects if o["kind"] != "Profile"]
    (out_dir / f"{env}.resources.yaml").write_text(header + dump_all(rest))
    (out_dir / f"{env}.namespace").write_text(profile[0]["metadata"]["name"] + "\n")
    return manifest


def dump_all(objects: Sequence[Mapping[str, Any]]) -> str:
    """The objects as one multi-document YAML."""
    return yaml.dump_all(objects, Dumper=_BlockDumper, sort_keys=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``make manifests``."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--env", required=True, help="overlay under manifests/overlays (dev, prod)")
    parser.add_argument("--outputs", required=True, type=Path, help="terraform output -json file")
    parser.add_argument("--out", required=True, type=Path, help="folder of the rendered manifests")
    parser.add_argument(
        "--image-tag", required=True, help="tag of the images that make push pushed"
    )
    parser.add_argument("--owner", default="", help="Kubeflow profile owner (a user's email)")
    parser.add_argument("--kubectl", default="kubectl", help="kubectl binary (default: kubectl)")
    args = parser.parse_args(argv)
    try:
        manifest = render(
            args.env,
            args.outputs,
            args.out,
            image_tag=args.image_tag,
            owner=args.owner,
            kubectl=args.kubectl,
        )
    except RenderError as error:
        log.error("%s", error)
        return 2
    log.info("wrote %s (apply with: make manifests-apply ENV=%s)", manifest, args.env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
