"""``skinlesion registry ...`` and ``skinlesion endpoint ...``: the model registry and endpoints."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from skinlesion.backends import BACKENDS


def register(subparsers: Any) -> None:
    registry = subparsers.add_parser("registry", help="list, approve or reject model versions")
    registry_commands = registry.add_subparsers(dest="registry_command", required=True)
    listing = registry_commands.add_parser("list", help="the versions of a model package group")
    listing.add_argument("--group", default="skinlesion", help="model package group")
    _backend_option(listing)
    listing.set_defaults(func=_list)
    for verb, status in (("approve", "Approved"), ("reject", "Rejected")):
        parser = registry_commands.add_parser(verb, help=f"set a version's status to {status}")
        parser.add_argument("arn", help="model package ARN")
        _backend_option(parser)
        parser.set_defaults(func=_set_status, status=status)

    pending = registry_commands.add_parser(
        "pending-deploys",
        help="Approved versions newer than what the endpoint serves (newest last); exit 0",
    )
    pending.add_argument("--group", default="skinlesion", help="model package group")
    pending.add_argument("--endpoint", required=True, help="the endpoint to compare with")
    _backend_option(pending)
    pending.set_defaults(func=_pending_deploys)

    endpoint = subparsers.add_parser("endpoint", help="list or stop deployed endpoints")
    endpoint_commands = endpoint.add_subparsers(dest="endpoint_command", required=True)
    listing = endpoint_commands.add_parser("list", help="the local backend's endpoints")
    _backend_option(listing)
    listing.set_defaults(func=_list_endpoints)
    delete = endpoint_commands.add_parser("delete", help="stop and delete an endpoint")
    delete.add_argument("name", help="endpoint name")
    _backend_option(delete)
    delete.set_defaults(func=_delete_endpoint)


def _backend_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=BACKENDS, default="local", help="default: local")
    parser.add_argument(
        "--local-root",
        type=Path,
        default=None,
        help="the local backend's folder (default: $SKINLESION_LOCAL_ROOT, else the folder of "
        "the last local deployment, e.g. build/demo/local)",
    )


def _backend(args: argparse.Namespace) -> Any:
    from skinlesion.backends import get_backend

    return get_backend(args.backend, local_root=args.local_root)


def _list(args: argparse.Namespace) -> int:
    versions = _backend(args).list_versions(args.group, details=True)
    json.dump([_as_json(v) for v in versions], sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _set_status(args: argparse.Namespace) -> int:
    from skinlesion.backends.base import ApprovalStatus

    version = _backend(args).set_approval_status(args.arn, ApprovalStatus(args.status))
    json.dump(_as_json(version), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def pending_deploys(backend: Any, group: str, endpoint_name: str) -> list[Any]:
    """Approved versions of ``group`` newer than the one ``endpoint_name`` serves, oldest first.

    No endpoint yet: every Approved version. The newest one is what a deploy run should serve.
    """
    from skinlesion.backends.base import ApprovalStatus
    from skinlesion.backends.errors import EndpointNotFoundError

    versions = backend.list_versions(group)
    try:
        serving = backend.describe_endpoint(endpoint_name).model_version_arn
    except EndpointNotFoundError:
        serving = ""
    served = next((v.version for v in versions if v.arn == serving), 0)
    return [
        v for v in versions if v.approval_status is ApprovalStatus.APPROVED and v.version > served
    ]


def _pending_deploys(args: argparse.Namespace) -> int:
    versions = pending_deploys(_backend(args), args.group, args.endpoint)
    json.dump([_as_json(v) for v in versions], sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _list_endpoints(args: argparse.Namespace) -> int:
    backend = _backend(args)
    if not hasattr(backend, "list_endpoints"):
        raise ValueError(
            "endpoint list is for the local backend; on AWS use the SageMaker console."
        )
    for endpoint in backend.list_endpoints():
        sys.stdout.write(f"{endpoint.name}\t{endpoint.status}\t{endpoint.url}\n")
    return 0


def _delete_endpoint(args: argparse.Namespace) -> int:
    _backend(args).delete_endpoint(args.name)
    sys.stdout.write(f"endpoint {args.name} stopped\n")
    return 0


def _as_json(version: Any) -> dict[str, Any]:
    payload = dataclasses.asdict(version)
    payload["approval_status"] = version.approval_status.value
    return payload
