"""Which pipelines exist: every ``pipelines/<name>.py`` that defines a ``@dsl.pipeline``.

The convention: a module under the pipelines folder whose module-level ``PIPELINE`` is a
``@dsl.pipeline``-decorated function, or, without ``PIPELINE``, that defines exactly one. Its
``<name>`` (the file name) is what ``make compile pipeline=<name>`` and the params and schedule
files use. Modules that define none (``demo.py``) are not pipelines.
"""

from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from kfp.dsl.graph_component import GraphComponent

log = logging.getLogger(__name__)

DEFAULT_PIPELINES_DIR = Path("pipelines")


class PipelineNotFoundError(ValueError):
    """No pipeline of that name; the message lists those that exist."""


class PipelineDefinitionError(ValueError):
    """A pipelines module is ambiguous (several pipelines and no ``PIPELINE``)."""


@dataclass(frozen=True)
class PipelineEntry:
    """One discovered pipeline."""

    name: str  # the module's file name: training, monitoring, ...
    module: str  # pipelines.training
    pipeline: GraphComponent

    @property
    def pipeline_name(self) -> str:
        """The name KFP knows it by (``@dsl.pipeline(name=...)``)."""
        return str(self.pipeline.name)


def _import_root(pipelines_dir: Path) -> tuple[str, str]:
    """The folder to put on ``sys.path`` and the package name of ``pipelines_dir``."""
    resolved = pipelines_dir.resolve()
    if not (resolved / "__init__.py").exists():
        raise FileNotFoundError(
            f"{pipelines_dir} is not a pipelines package (no __init__.py). Expected the "
            "repository's pipelines/ folder."
        )
    return str(resolved.parent), resolved.name


def _pipeline_of(module: object, module_name: str) -> GraphComponent | None:
    explicit = getattr(module, "PIPELINE", None)
    if explicit is not None:
        if not isinstance(explicit, GraphComponent):
            raise PipelineDefinitionError(
                f"{module_name}.PIPELINE is a {type(explicit).__name__}; expected a function "
                "decorated with @dsl.pipeline."
            )
        return explicit
    found = {
        id(value): value
        for value in vars(module).values()
        if isinstance(value, GraphComponent)
        and getattr(value.pipeline_func, "__module__", None) == module_name
    }
    if len(found) > 1:
        names = sorted(str(p.name) for p in found.values())
        raise PipelineDefinitionError(
            f"{module_name} defines several pipelines ({', '.join(names)}); set PIPELINE = <the "
            "one to compile> in it."
        )
    return next(iter(found.values()), None)


def discover_pipelines(pipelines_dir: Path = DEFAULT_PIPELINES_DIR) -> dict[str, PipelineEntry]:
    """Import each ``<pipelines_dir>/<name>.py`` and return the pipelines found, by name."""
    root, package = _import_root(pipelines_dir)
    if root not in sys.path:
        sys.path.insert(0, root)
    entries: dict[str, PipelineEntry] = {}
    for path in sorted(pipelines_dir.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        module_name = f"{package}.{path.stem}"
        module = importlib.import_module(module_name)
        pipeline = _pipeline_of(module, module_name)
        if pipeline is None:
            log.debug("%s defines no pipeline", module_name)
            continue
        entries[path.stem] = PipelineEntry(name=path.stem, module=module_name, pipeline=pipeline)
    return entries


def get_pipeline(name: str, pipelines_dir: Path = DEFAULT_PIPELINES_DIR) -> PipelineEntry:
    """The pipeline ``pipelines/<name>.py`` defines, or an error that lists the known ones."""
    entries = discover_pipelines(pipelines_dir)
    try:
        return entries[name]
    except KeyError:
        known = ", ".join(sorted(entries)) or "none"
        raise PipelineNotFoundError(
            f"No pipeline {name!r} in {pipelines_dir}/. Known pipelines: {known}."
        ) from None
