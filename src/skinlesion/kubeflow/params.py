"""Per-environment settings and pipeline arguments: ``pipelines/params/<env>.yaml``.

A params file has three sections::

    kubeflow:    # connection settings (skinlesion.kubeflow.settings.KubeflowSettings)
    compile:     # compile-time options: image_registry or image_repositories, image_tag,
                 # enable_caching, jobs_in_pod, kfp_backend, tuning
    pipelines:   # arguments per pipeline: {training: {backend: sagemaker, ...}, ...}

A string value may hold placeholders, resolved when a command reads the section (never at
import): ``${NAME}`` or ``${NAME:-default}`` from the environment, and ``${tf:output}`` or
``${tf:output.key}`` from the Terraform outputs JSON (``terraform output -json``) of the
environment, so that nothing Terraform knows is typed twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from skinlesion.kubeflow.validation import ParameterInput

DEFAULT_PARAMS_DIR = Path("pipelines/params")
SECTIONS = ("kubeflow", "compile", "pipelines")
COMPILE_KEYS = (
    "image_registry",
    "image_repositories",
    "image_tag",
    "enable_caching",
    "jobs_in_pod",
    "kfp_backend",
    "tuning",  # how the training pipeline finds its model (compiling.TuningSettings)
)
PLACEHOLDER = re.compile(r"\$\{(?P<body>[^}]+)\}")


class ParamsError(ValueError):
    """A params file or a pipeline argument is invalid; the message says what is accepted."""


def _tf_value(outputs: Mapping[str, Any], reference: str, where: str, source: str) -> str:
    name, _, path = reference.partition(".")
    if name not in outputs:
        known = ", ".join(sorted(outputs)) or "none"
        raise ParamsError(f"{where}: Terraform output {name!r} not in {source} (outputs: {known}).")
    value = outputs[name]
    if isinstance(value, Mapping) and "value" in value and "type" in value:
        value = value["value"]  # the `terraform output -json` form
    for key in filter(None, path.split(".")):
        if not isinstance(value, Mapping) or key not in value:
            raise ParamsError(f"{where}: Terraform output {reference!r} has no key {key!r}.")
        value = value[key]
    if isinstance(value, (Mapping, list)):
        raise ParamsError(f"{where}: Terraform output {reference!r} is not a single value.")
    return str(value)


@dataclass
class Resolver:
    """Resolves ``${...}`` placeholders from the environment and Terraform outputs."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    tf_outputs_path: Path | None = None
    _tf_outputs: dict[str, Any] | None = None

    def _outputs(self, where: str) -> dict[str, Any]:
        if self._tf_outputs is None:
            path = self.tf_outputs_path
            if path is None or not path.is_file():
                raise ParamsError(
                    f"{where} reads a Terraform output but there is no outputs file "
                    f"({path or 'none given'}): run `make tf-outputs ENV=<env>` or pass "
                    "--tf-outputs / TF_OUTPUTS=<terraform output -json file>."
                )
            self._tf_outputs = json.loads(path.read_text())
        return self._tf_outputs

    def resolve(self, value: Any, where: str) -> Any:
        """``value`` with its placeholders resolved (recursively through lists and mappings)."""
        if isinstance(value, Mapping):
            return {k: self.resolve(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value

        def substitute(match: re.Match[str]) -> str:
            body = match.group("body")
            if body.startswith("tf:"):
                source = str(self.tf_outputs_path)
                return _tf_value(self._outputs(where), body[3:], where, source)
            name, has_default, default = body.partition(":-")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ParamsError(
                    f"{where}: invalid placeholder ${{{body}}}. Accepted: ${{NAME}}, "
                    "${NAME:-default}, ${tf:output} or ${tf:output.key}."
                )
            if self.environ.get(name):
                return self.environ[name]
            if has_default:
                return default
            raise ParamsError(f"{where} needs ${{{name}}}: set {name} in the environment.")

        return PLACEHOLDER.sub(substitute, value)


@dataclass
class EnvironmentParams:
    """One environment's params file, its placeholders resolved section by section."""

    env: str
    path: Path
    raw: dict[str, Any]
    resolver: Resolver

    def section(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name) or {}
        if not isinstance(value, Mapping):
            raise ParamsError(f"{self.path}: {name} must be a mapping.")
        resolved = self.resolver.resolve(dict(value), f"{self.path}: {name}")
        return dict(resolved)

    def kubeflow(self) -> dict[str, Any]:
        return self.section("kubeflow")

    def compile_options(self) -> dict[str, Any]:
        values = self.section("compile")
        for key in values:
            if key not in COMPILE_KEYS:
                raise ParamsError(
                    f"{self.path}: compile.{key} is unknown. Accepted: {', '.join(COMPILE_KEYS)}."
                )
        options = {k: v for k, v in values.items() if v not in (None, "")}
        if "tuning" in options:
            options["tuning"] = self._parse_tuning(options["tuning"])
        return options

    def tuning(self) -> Any:
        """``compile.tuning`` as ``TuningSettings`` (mode none when the file names none); only
        this key's placeholders are resolved, so it needs no Terraform outputs."""
        from skinlesion.kubeflow.compiling import TuningSettings

        raw = self.raw.get("compile") or {}
        if not isinstance(raw, Mapping):
            raise ParamsError(f"{self.path}: compile must be a mapping.")
        value = self.resolver.resolve(raw.get("tuning"), f"{self.path}: compile.tuning")
        return TuningSettings() if value in (None, "") else self._parse_tuning(value)

    def _parse_tuning(self, value: Any) -> Any:
        from skinlesion.kubeflow.compiling import CompileOptionError, TuningSettings

        try:
            return TuningSettings.parse(value)
        except (CompileOptionError, TypeError) as error:
            raise ParamsError(f"{self.path}: compile.tuning: {error}") from None

    def arguments(self, pipeline: str) -> dict[str, Any]:
        """The arguments the file gives ``pipeline`` (empty when it names none)."""
        pipelines = self.raw.get("pipelines") or {}
        if not isinstance(pipelines, Mapping):
            raise ParamsError(f"{self.path}: pipelines must map pipeline names to arguments.")
        value = pipelines.get(pipeline) or {}
        if not isinstance(value, Mapping):
            raise ParamsError(f"{self.path}: pipelines.{pipeline} must be a mapping.")
        return dict(self.resolver.resolve(dict(value), f"{self.path}: pipelines.{pipeline}"))


def available_environments(params_dir: Path = DEFAULT_PARAMS_DIR) -> list[str]:
    return sorted(p.stem for p in params_dir.glob("*.yaml"))


def load_environment(
    env: str,
    params_dir: Path = DEFAULT_PARAMS_DIR,
    *,
    environ: Mapping[str, str] | None = None,
    tf_outputs: Path | None = None,
) -> EnvironmentParams:
    """Read ``<params_dir>/<env>.yaml``; placeholders are resolved when a section is read."""
    path = params_dir / f"{env}.yaml"
    if not path.is_file():
        known = ", ".join(available_environments(params_dir)) or "none"
        raise ParamsError(f"No params file {path}. Environments: {known}.")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{path}: expected a mapping with {', '.join(SECTIONS)}.")
    for key in raw:
        if key not in SECTIONS:
            raise ParamsError(f"{path}: unknown section {key!r}. Accepted: {', '.join(SECTIONS)}.")
    resolver = Resolver(
        environ=dict(os.environ if environ is None else environ), tf_outputs_path=tf_outputs
    )
    return EnvironmentParams(env=env, path=path, raw=dict(raw), resolver=resolver)


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """``["epochs=2", "architecture=resnet50"]`` -> a dict of raw strings."""
    out: dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ParamsError(f"Invalid argument {item!r}: expected name=value.")
        out[name.strip()] = value
    return out


def _coerce(name: str, value: Any, spec: ParameterInput) -> Any:
    kind = spec.parameter_type
    if isinstance(value, str) and kind != "STRING":
        with contextlib.suppress(yaml.YAMLError):
            value = yaml.safe_load(value)
    if kind == "STRING":
        if isinstance(value, (dict, list)):
            raise ParamsError(f"Argument {name}: expected a string, got {value!r}.")
        return value if isinstance(value, str) else str(value)
    if kind == "NUMBER_INTEGER":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"Argument {name}: expected an integer, got {value!r}.")
        return value
    if kind == "NUMBER_DOUBLE":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"Argument {name}: expected a number, got {value!r}.")
        return float(value)
    if kind == "BOOLEAN":
        if not isinstance(value, bool):
            raise ParamsError(f"Argument {name}: expected true or false, got {value!r}.")
        return value
    if kind == "LIST" and not isinstance(value, list):
        raise ParamsError(f"Argument {name}: expected a list, got {value!r}.")
    if kind == "STRUCT" and not isinstance(value, Mapping):
        raise ParamsError(f"Argument {name}: expected a mapping, got {value!r}.")
    return value


def check_arguments(
    arguments: Mapping[str, Any], inputs: Mapping[str, ParameterInput], pipeline: str
) -> dict[str, Any]:
    """Type-check ``arguments`` against the compiled pipeline's inputs; return them coerced."""
    unknown = sorted(set(arguments) - set(inputs))
    if unknown:
        raise ParamsError(
            f"Pipeline {pipeline} has no input {', '.join(unknown)}. "
            f"Accepted: {', '.join(sorted(inputs))}."
        )
    checked = {name: _coerce(name, value, inputs[name]) for name, value in arguments.items()}
    missing = sorted(n for n, spec in inputs.items() if not spec.optional and n not in checked)
    if missing:
        raise ParamsError(
            f"Pipeline {pipeline} needs {', '.join(missing)}: give them in "
            "pipelines/params/<env>.yaml under pipelines.<name> or with --set name=value."
        )
    return dict(sorted(checked.items()))
