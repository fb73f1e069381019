#!/usr/bin/env python3
"""Push the images that ``make images`` built to the ECR repositories in Terraform's outputs.

``make push ENV=<env>`` runs it: for each image it logs Docker in to the repository's registry
(ECR's GetAuthorizationToken, through the project's boto3 client factory, so no AWS CLI is
needed), tags ``skinlesion-<name>:<tag>`` as ``<repository_url>:<tag>`` and pushes it. ``uri``
prints the remote URI of one image (what ``make compile`` bakes into the pipeline).
"""

from __future__ import annotations

import argparse
import base64
import logging
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from skinlesion.aws import AwsClients
from skinlesion.settings import SettingsError, image_uri, load_terraform_outputs

IMAGES = ("training", "inference", "pipeline")

log = logging.getLogger("skinlesion.containers")


class PublishError(RuntimeError):
    """An image cannot be pushed; the message says what is missing and how to get it."""


def local_image(name: str, tag: str) -> str:
    """The name ``make images`` gives an image: ``skinlesion-<name>:<tag>``."""
    return f"skinlesion-{name}:{tag}"


def remote_image(outputs: Mapping[str, Any], name: str, tag: str) -> str:
    """``<repository_url>:<tag>`` from the Terraform output ``<name>_image_repository_url``."""
    if name not in IMAGES:
        raise PublishError(f"Unknown image {name!r}. Accepted: {', '.join(IMAGES)}.")
    key = f"{name}_image_repository_url"
    repository = outputs.get(key)
    if not repository:
        raise PublishError(
            f"Terraform outputs lack {key}; run `make tf-outputs ENV=<env>` after `make tf-apply`."
        )
    return image_uri(str(repository), tag)


def registry_of(uri: str) -> str:
    """The registry host of an image URI (``<account>.dkr.ecr.<region>.amazonaws.com``)."""
    host = uri.split("/", 1)[0]
    if "/" not in uri or "." not in host:
        raise PublishError(f"{uri!r} names no registry; expected <registry host>/<repository>.")
    return host


def ecr_password(ecr: Any) -> str:
    """The Docker password from ECR's GetAuthorizationToken (the token is base64 ``AWS:<pw>``)."""
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    if user != "AWS" or not password:
        raise PublishError("ECR returned an authorization token that is not 'AWS:<password>'.")
    return password


def push(
    outputs: Mapping[str, Any],
    names: Sequence[str],
    tag: str,
    *,
    docker: str = "docker",
    clients: AwsClients | None = None,
    run: Callable[..., Any] = subprocess.run,
) -> list[str]:
    """Log in, tag and push each image; return the pushed URIs."""
    if not tag:
        raise PublishError("No image tag: pass the tag that `make images` built (IMAGE_TAG).")
    if shutil.which(docker) is None:
        raise PublishError(f"{docker} is not on PATH; pushing needs a Docker client and engine.")
    uris = [remote_image(outputs, name, tag) for name in names]
    if clients is None:
        region = str(outputs.get("region") or "")
        if not region:
            raise PublishError("Terraform outputs lack region; run `make tf-outputs ENV=<env>`.")
        clients = AwsClients(region)
    password = ecr_password(clients.client("ecr"))
    for registry in sorted({registry_of(uri) for uri in uris}):
        run(
            [docker, "login", "--username", "AWS", "--password-stdin", registry],
            input=password,
            text=True,
            check=True,
        )
    for name, uri in zip(names, uris, strict=True):
        log.info("pushing %s as %s", local_image(name, tag), uri)
        run([docker, "tag", local_image(name, tag), uri], check=True)
        run([docker, "push", uri], check=True)
    return uris


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``make push``."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--outputs", required=True, type=Path, help="terraform output -json file")
    parser.add_argument("--tag", required=True, help="image tag (make images IMAGE_TAG)")
    commands = parser.add_subparsers(dest="command", required=True)
    uri_parser = commands.add_parser("uri", help="print the remote URI of one image")
    uri_parser.add_argument("name", choices=IMAGES)
    push_parser = commands.add_parser("push", help="log in, tag and push images")
    push_parser.add_argument(
        "names", nargs="*", help=f"images to push (default: {' '.join(IMAGES)})"
    )
    push_parser.add_argument("--docker", default="docker", help="Docker client (default: docker)")
    args = parser.parse_args(argv)
    try:
        outputs = load_terraform_outputs(args.outputs)
        if args.command == "uri":
            print(remote_image(outputs, args.name, args.tag))
        else:
            push(outputs, args.names or list(IMAGES), args.tag, docker=args.docker)
    except (PublishError, SettingsError) as error:
        log.error("%s", error)
        return 2
    except subprocess.CalledProcessError as error:
        log.error("%s failed with exit status %d", " ".join(error.cmd), error.returncode)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
