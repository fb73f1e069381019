"""What one pipeline step hands the next: small typed records kept in KFP artifact metadata.

A step writes its record with ``write(artifact)`` and the next reads it with ``read(artifact)``;
this module is the one place that knows the metadata keys. On Kubeflow the records travel in
ML Metadata with the artifacts, so the next pod learns where the data is without downloading it:
KFP's launcher downloads every input artifact into the pod, so on SageMaker the artifacts hold
only a pointer (``skinlesion.steps.write_pointer``) and these records are how the next step finds
the data in S3.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self


class HasMetadata(Protocol):
    metadata: dict[str, Any]


class HandoffError(ValueError):
    """An artifact does not carry the record a step needs; says which step should have written it."""


@dataclass(frozen=True)
class _Handoff:
    written_by: ClassVar[str]

    def write(self, artifact: HasMetadata) -> None:
        """Keep this record in the artifact's metadata (the keys are the field names)."""
        artifact.metadata.update(dataclasses.asdict(self))

    @classmethod
    def read(cls, artifact: HasMetadata) -> Self:
        """The record in the artifact's metadata; fields missing from it take their defaults,
        and a required one that is missing is an error naming the step that writes it."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in artifact.metadata:
                values[f.name] = artifact.metadata[f.name]
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise HandoffError(
                    f"The artifact has no {f.name!r} in its metadata: it is not the output of "
                    f"the {cls.written_by} step (keys present: {sorted(artifact.metadata)})."
                )
        return cls(**values)


@dataclass(frozen=True)
class DatasetHandoff(_Handoff):
    """The preprocess step's dataset: where the arrays are and how they were made."""

    written_by: ClassVar[str] = "preprocess"
    dataset: str = ""  # the dataset folder: the artifact's path locally, s3:// job output on AWS
    data_uri: str = ""  # the ISIC folder it was made from
    image_size: int = 0
    splits: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelHandoff(_Handoff):
    """The train step's model: model.tar.gz where the step reads it and where a job reads it."""

    written_by: ClassVar[str] = "train"
    model_data: str = ""  # model.tar.gz where the steps read it (s3:// on SageMaker)
    job_model_data: str = ""  # the same archive where a job reads it (s3:// on SageMaker)
    architecture: str = ""
    image_size: int = 0
    dataset: str = ""  # the dataset it was trained on (lineage: the registry hashes its manifest)


@dataclass(frozen=True)
class EvaluationHandoff(_Handoff):
    """The evaluate step's result: the evaluation folder and its headline figure."""

    written_by: ClassVar[str] = "evaluate"
    evaluation: str  # the evaluation folder (metrics.json, report.html); local path or s3://
    balanced_accuracy: float = 0.0
