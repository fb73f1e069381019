"""Regenerate the KFP API server's proto descriptors, one FileDescriptorSet per backend release.

The stand-in API server (tests/kubeflow/fake_kfp.py) parses uploads against the protos that the
real server of each release was built with. The server's Go module pins them in go.mod: from
2.5.0 on a ``replace`` points at the tag's own ``api/`` and ``kubernetes_platform/`` folders;
before that, ``go.mod`` names a pseudo-version (a commit) of each module. The commits below are
those pins. Run with a clone of github.com/kubeflow/pipelines and grpcio-tools on the path:

    python tests/kubeflow/protos/regenerate.py /path/to/pipelines
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

# release -> (commit of api/v2alpha1/pipeline_spec.proto, commit of kubernetes_platform/proto)
PINS: dict[str, tuple[str, str]] = {
    "2.2.0": ("58ce09e07d03", "8b2a099e8c9f"),  # go.mod of tag 2.2.0
    "2.3.0": ("58ce09e07d03", "d911c8b73b49"),  # go.mod of tag 2.3.0
    "2.4.1": ("873e9dedd766", "d911c8b73b49"),  # go.mod of tag 2.4.1
    "2.5.0": ("2.5.0", "2.5.0"),  # replace => ./api, ./kubernetes_platform
    "2.14.0": ("2.14.0", "2.14.0"),
    "2.15.0": ("2.15.0", "2.15.0"),
    "2.16.0": ("2.16.0", "2.16.0"),
    "2.17.0": ("2.17.0", "2.17.0"),
}


def main(repo: Path) -> None:
    """Write ``kfp-<release>.binpb`` next to this file for every pinned release."""
    import google.api  # noqa: F401  (googleapis-common-protos: google/rpc/status.proto)
    import grpc_tools
    from grpc_tools import protoc

    includes = [
        str(Path(grpc_tools.__file__).parent / "_proto"),
        str(Path(sys.modules["google.api"].__path__[0]).parent.parent),
    ]
    here = Path(__file__).parent
    for release, (api, k8s) in PINS.items():
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            for commit, source in (
                (api, "api/v2alpha1/pipeline_spec.proto"),
                (k8s, "kubernetes_platform/proto/kubernetes_executor_config.proto"),
            ):
                text = subprocess.run(
                    ["git", "-C", str(repo), "show", f"{commit}:{source}"],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                (root / Path(source).name).write_text(text)
            out = here / f"kfp-{release}.binpb"
            args = [
                "protoc",
                f"-I{root}",
                *(f"-I{i}" for i in includes),
                f"--descriptor_set_out={out}",
                "--include_imports",
                "pipeline_spec.proto",
                "kubernetes_executor_config.proto",
            ]
            if protoc.main(args) != 0:
                raise SystemExit(f"protoc failed for {release}")
            print(f"{release}: {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
