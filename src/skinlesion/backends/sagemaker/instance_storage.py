"""Which SageMaker instance types have local NVMe instance storage (and so take no volume KMS key).

One rule for jobs (``ResourceConfig.VolumeKmsKeyId``, ``ClusterConfig.VolumeKmsKeyId``) and
endpoints (``CreateEndpointConfig.KmsKeyId``): SageMaker refuses a volume key on a type whose
storage is local NVMe, which a hardware module on the instance encrypts itself.

Sources of the rule:
- SageMaker Developer Guide, "Instance storage volumes" (host-instance-storage.html) and the
  CreateEndpointConfig reference ("You can't request a KmsKeyId when using an instance type
  with local storage ... the call to CreateEndpointConfig fails").
- SageMaker Python SDK, ``sagemaker.utils.instance_supports_kms`` / ``volume_size_supported``:
  "Any instance type with a 'd' in the instance family (i.e. c5d, p4d, etc) + g5 does not
  support attaching an EBS volume"; the SDK drops ``volume_kms_key`` for those types.
- Families the SDK's letter rule misses but whose only storage is NVMe per the EC2 instance
  type pages: g6, g6e, p5, p5e, trn1, trn1n.
"""

from __future__ import annotations

_NVME_ONLY_FAMILIES = frozenset({"g5", "g6", "g6e", "p5", "p5e", "trn1", "trn1n"})


def instance_family(instance_type: str) -> str:
    """``ml.g4dn.xlarge`` -> ``g4dn``; ValueError for anything not ``ml.<family>.<size>``."""
    parts = instance_type.split(".")
    if len(parts) != 3 or parts[0] != "ml" or not parts[1] or not parts[2]:
        raise ValueError(
            f"Invalid instance type {instance_type!r}: expected ml.<family>.<size>, "
            "e.g. ml.m5.xlarge."
        )
    return parts[1]


def has_instance_storage(instance_type: str) -> bool:
    """True for types with local NVMe storage (``ml.m5d``, ``ml.g4dn``, ``ml.g5``, ``ml.p4d``...),
    on which SageMaker refuses a volume KMS key."""
    family = instance_family(instance_type)
    # The letter after the generation: "d" marks local disks (m5d, c6id, g4dn, p3dn, p4d, p4de).
    generation_end = next((i for i, c in enumerate(family) if c.isdigit()), len(family))
    while generation_end < len(family) and family[generation_end].isdigit():
        generation_end += 1
    return "d" in family[generation_end:] or family in _NVME_ONLY_FAMILIES


def volume_kms_key(instance_type: str, kms_key_arn: str) -> dict[str, str]:
    """``{"VolumeKmsKeyId": key}`` when the type takes one; empty on instance storage types."""
    if not kms_key_arn or has_instance_storage(instance_type):
        return {}
    return {"VolumeKmsKeyId": kms_key_arn}
