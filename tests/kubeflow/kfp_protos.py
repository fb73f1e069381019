"""The pipeline-spec and Kubernetes-platform protos of each supported KFP backend release.

Each release's FileDescriptorSet (tests/kubeflow/protos/, made by regenerate.py from the commits
that release's go.mod pins) is loaded into a descriptor pool of its own, so two releases'
``ml_pipelines.PipelineConfig`` never meet.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

PROTOS_DIR = Path(__file__).parent / "protos"


class ReleaseProtos:
    """Message classes of one release, and strict JSON parsing the way Go's protojson does."""

    def __init__(self, release: str) -> None:
        data = (PROTOS_DIR / f"kfp-{release}.binpb").read_bytes()
        files = descriptor_pb2.FileDescriptorSet.FromString(data)
        self.release = release
        self.pool = descriptor_pool.DescriptorPool()
        for file in files.file:
            self.pool.Add(file)

    def message(self, full_name: str) -> Any:
        return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))()

    def parse(self, data: Any, full_name: str) -> Any:
        """Parse ``data`` into ``full_name``; unknown fields raise ``json_format.ParseError``."""
        return json_format.ParseDict(data, self.message(full_name), ignore_unknown_fields=False)


@functools.cache
def release_protos(release: str) -> ReleaseProtos:
    """The (cached) protos of ``release``."""
    return ReleaseProtos(release)
