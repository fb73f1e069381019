"""What the container, manifest and workflow tests share: parsers and environment builders."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = REPO_ROOT / "containers"
MANIFESTS = REPO_ROOT / "manifests"
IMAGES = ("training", "inference", "pipeline")

# --- Dockerfiles --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined, comments dropped."""

    keyword: str
    arguments: str
    line: int
    stage: int  # index of the FROM it belongs to

    def flags_and_words(self) -> tuple[dict[str, str], list[str]]:
        """``--flag=value`` options and the remaining words (exec-form JSON is decoded)."""
        text = self.arguments.strip()
        flags: dict[str, str] = {}
        while text.startswith("--"):
            head, _, text = text.partition(" ")
            name, _, value = head[2:].partition("=")
            flags[name] = value
            text = text.strip()
        if text.startswith("["):
            return flags, [str(word) for word in json.loads(text)]
        return flags, shlex.split(text)


def parse_dockerfile(path: Path) -> list[Instruction]:
    """The instructions of ``path`` (the subset of the grammar these Dockerfiles use)."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment line inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, arguments = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, arguments.strip(), start, stage))
    return instructions


def stage_names(instructions: Sequence[Instruction]) -> dict[str, int]:
    """``FROM ... AS <name>`` names to stage indexes."""
    names: dict[str, int] = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            words = ins.arguments.split()
            if len(words) == 3 and words[1].lower() == "as":
                names[words[2]] = ins.stage
    return names


def final_stage(instructions: Sequence[Instruction]) -> list[Instruction]:
    """The instructions of the last stage (the image that ships)."""
    last = max(ins.stage for ins in instructions)
    return [ins for ins in instructions if ins.stage == last]


# --- .dockerignore ------------------------------------------------------------------------------


def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Docker's ignore-pattern syntax (Go filepath.Match plus ``**``) as a regex."""
    out = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        else:
            out += re.escape(char)
        i += 1
    return re.compile(out)


@dataclass(frozen=True)
class DockerIgnore:
    """The rules of a .dockerignore: the last matching pattern decides, ``!`` re-includes."""

    rules: tuple[tuple[bool, re.Pattern[str]], ...]

    @classmethod
    def read(cls, path: Path) -> DockerIgnore:
        rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            rules.append((include, _glob_to_regex(pattern)))
        return cls(tuple(rules))

    def excluded(self, relative: str) -> bool:
        """Whether the build context leaves ``relative`` (a path from the context root) out."""
        parts = relative.strip("/").split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for include, regex in self.rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                result = not include
        return result


def context_files(root: Path, source: str, ignore: DockerIgnore) -> list[str]:
    """Files under ``source`` (relative to the context ``root``) that reach the build."""
    path = root / source
    candidates = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    relative = [p.relative_to(root).as_posix() for p in candidates]
    return [r for r in relative if not ignore.excluded(r)]


# --- Requirement sets and the environments they describe ------------------------------------------


def read_requirements(path: Path) -> list[Requirement]:
    """The requirements of a pip requirements file (comments and blank lines skipped)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def project_dependencies() -> dict[str, list[Requirement]]:
    """pyproject.toml's dependencies by group: ``base`` and each optional extra."""
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    groups = {"base": [Requirement(r) for r in project["dependencies"]]}
    for extra, requirements in project.get("optional-dependencies", {}).items():
        groups[extra] = [Requirement(r) for r in requirements]
    return groups


def project_scripts() -> dict[str, str]:
    """pyproject.toml's console scripts: name -> ``module:function``."""
    import tomllib

    return dict(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"])


@dataclass
class Closure:
    """The installed distributions that a requirement set pulls in, with the extras asked of each."""

    distributions: dict[str, metadata.Distribution] = field(default_factory=dict)
    extras: dict[str, set[str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def requirement_closure(requirements: Iterable[Requirement]) -> Closure:
    """Every distribution the requirements need, transitively, as installed in this environment."""
    closure = Closure()
    queue = [(r.name, set(r.extras)) for r in requirements]
    while queue:
        name, extras = queue.pop()
        key = canonicalize_name(name)
        known = closure.extras.get(key)
        if known is not None and extras <= known:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            closure.missing.append(name)
            continue
        closure.distributions[key] = dist
        closure.extras[key] = (known or set()) | extras
        for raw in dist.requires or []:
            requirement = Requirement(raw)
            if requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra})
                for extra in ("", *closure.extras[key])
            ):
                queue.append((requirement.name, set(requirement.extras)))
    return closure


def mirror_environment(closure: Closure, target: Path) -> Path:
    """A site-packages folder holding only the closure's files (as symlinks) and metadata.

    Python started with ``-S`` and this folder on its path sees exactly what an image built from
    the requirement set would hold: no other distribution can be imported or found by
    importlib.metadata.
    """
    files: dict[str, list[tuple[metadata.Distribution, tuple[str, ...]]]] = {}
    for dist in closure.distributions.values():
        if not dist.files:
            raise RuntimeError(f"{dist.metadata['Name']} lists no files; cannot mirror it.")
        for file in dist.files:
            parts = Path(str(file)).parts
            if (
                not parts
                or parts[0] == ".."
                or "__pycache__" in parts
                or parts[-1].endswith(".pth")
            ):
                continue
            files.setdefault(parts[0], []).append((dist, parts))
    for top, entries in files.items():
        owners = {id(dist) for dist, _ in entries}
        # A regular package (with __init__.py) that one distribution of the set fills alone is
        # linked as a whole; folders that several share (kfp/ holds kfp-kubernetes, nvidia/ and
        # google/ are namespaces) are linked file by file.
        whole = len(owners) == 1 and any(parts == (top, "__init__.py") for _, parts in entries)
        for dist, parts in entries[:1] if whole else entries:
            link_parts = (top,) if whole else parts
            link = target.joinpath(*link_parts)
            source = Path(str(dist.locate_file(Path(*link_parts))))
            if link.is_symlink() or link.exists() or not source.exists():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source)
    return target


@dataclass(frozen=True)
class ImportReport:
    """What happened in the image-like interpreter: errors by module, and what got imported."""

    errors: dict[str, str]
    modules: frozenset[str]
    found: dict[str, bool]


_PROBE = r"""
import importlib, importlib.util, json, sys, traceback
spec = json.loads(sys.argv[1])
sys.path[:0] = spec["path"]
errors = {}
for name in spec["modules"]:
    try:
        importlib.import_module(name)
    except BaseException as error:
        errors[name] = "".join(traceback.format_exception_only(type(error), error)).strip()
for target in spec["calls"]:
    module, _, attribute = target.partition(":")
    try:
        function = getattr(importlib.import_module(module), attribute)
        if not callable(function):
            raise TypeError(f"{target} is not callable")
    except BaseException as error:
        errors[target] = "".join(traceback.format_exception_only(type(error), error)).strip()
for target in spec["invoke"]:
    module, _, attribute = target.partition(":")
    try:
        getattr(importlib.import_module(module), attribute)()
    except BaseException as error:
        errors[target] = "".join(traceback.format_exception_only(type(error), error)).strip()
found = {name: importlib.util.find_spec(name) is not None for name in spec["find"]}
print(json.dumps({"errors": errors, "modules": sorted(sys.modules), "found": found}))
"""


def probe_imports(
    path: Sequence[Path],
    modules: Sequence[str],
    *,
    callables: Sequence[str] = (),
    invoke: Sequence[str] = (),
    find: Sequence[str] = (),
    cwd: Path,
    timeout: float = 120,
) -> ImportReport:
    """Import ``modules`` in a fresh interpreter whose only site-packages are ``path``.

    ``callables`` (``module:function``) must resolve to callables; ``invoke`` ones are called
    without arguments. ``find`` names are looked up with ``importlib.util.find_spec``.
    """
    spec = {
        "path": [str(p) for p in path],
        "modules": list(modules),
        "calls": list(callables),
        "invoke": list(invoke),
        "find": list(find),
    }
    result = subprocess.run(
        [sys.executable, "-S", "-E", "-c", _PROBE, json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "MPLBACKEND": "Agg"},
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"import probe crashed ({result.returncode}):\n{result.stderr[-4000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return ImportReport(report["errors"], frozenset(report["modules"]), report["found"])


def package_modules(package: str) -> list[str]:
    """``package`` and every module under it in src/, found on disk without importing them."""
    root = REPO_ROOT / "src" / Path(*package.split("."))
    if root.with_suffix(".py").is_file():
        return [package]
    if not (root / "__init__.py").is_file():
        return []
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(REPO_ROOT / "src").with_suffix("")
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        if "__pycache__" not in parts:
            found.append(".".join(parts))
    return sorted(set(found))


# --- Kubernetes manifests -------------------------------------------------------------------------


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize <directory>`` as objects."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def crd_json_schema(crd: Mapping[str, Any], version: str) -> dict[str, Any]:
    """A CRD version's openAPIV3Schema as a JSON schema that rejects unknown fields.

    The API server prunes unknown fields of a structural schema (and ``kubectl apply
    --validate=strict`` rejects them); here they are errors, except where the schema says
    x-kubernetes-preserve-unknown-fields.
    """
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return _strict(entry["schema"]["openAPIV3Schema"])
    names = [v["name"] for v in crd["spec"]["versions"]]
    raise KeyError(f"{crd['metadata']['name']} has no version {version} (has {names})")


def _strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if (
        out.get("type") == "object"
        and "properties" in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in out
    ):
        out["additionalProperties"] = False
    return out


def iter_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string leaf of a nested structure with its dotted path."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from iter_strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from iter_strings(item, f"{path}[{index}]")
    elif isinstance(value, str):
        yield path, value


def imported_distributions_roots(modules: Iterable[str]) -> set[str]:
    """Top-level third-party names that the source of ``modules`` imports, lazily ones included.

    Reads src/ with ``ast`` (nothing is imported): imports inside functions run only when the
    function does, so importing a module proves nothing about them.
    """
    import ast

    names: set[str] = set()
    for module in modules:
        parts = module.split(".")
        base = REPO_ROOT / "src" / Path(*parts)
        path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if not path.is_file():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {
        n
        for n in names
        if n not in sys.stdlib_module_names and n not in ("skinlesion", "__future__")
    }


def component_modules() -> list[str]:
    """The skinlesion modules that the KFP components' bodies import (they run in the pipeline
    image): ``from skinlesion import steps`` gives ``skinlesion.steps``."""
    import ast

    found: set[str] = set()
    for path in sorted((REPO_ROOT / "components").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module):
                continue
            if node.module.split(".")[0] != "skinlesion":
                continue
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                # `from package import module` names a module; `from module import name` does not.
                found.add(candidate if package_modules(candidate) else node.module)
    return sorted(found)
