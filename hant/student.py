"""The student: the teacher with chosen slots replaced; saved as arch.json + weights.safetensors.

``arch.json`` holds everything needed to rebuild the network without the teacher's weights or
the run directory: the timm model and its arguments (or, for a teacher given as a module, the
factory reference that builds its architecture: ``model.source`` is ``factory``), and for each
replaced slot its candidate spec. ``load_student`` rebuilds that structure and loads
``weights.safetensors`` into it.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Mapping

from torch import nn

from .deploy.plan import PrecisionPlan
from .errors import HantError, PluginError
from .io import read_json, save_tensors, write_json
from .ops_zoo import CandidateSpec, build_candidate, load_plugins
from .latency.target import LatencyTarget
from .slots import Slot, get_submodule, set_submodule
from .user_code import check_allowed, resolve_factory
from .weights import load_file

ARCH_FORMAT = "hant-student/1"
PRUNED_FORMAT = "hant-pruned/1"
"""What ``hant prune`` writes (``hant.pruning.save``); ``load_student`` reads both."""


def assemble_student(
    teacher: nn.Module,
    slots: list[Slot],
    choices: Mapping[str, CandidateSpec],
    candidate_modules: Mapping[str, nn.Module] | None = None,
) -> nn.Module:
    """A copy of ``teacher`` with each slot's module replaced by its chosen candidate.

    ``candidate_modules`` (slot name → module) supplies trained modules; slots without one get
    a module freshly built from its spec (keep: the teacher's own block).
    """
    student = copy.deepcopy(teacher)
    for slot in slots:
        spec = choices[slot.name]
        if spec.family == "keep":
            continue
        if candidate_modules is not None and slot.name in candidate_modules:
            module = candidate_modules[slot.name]
        else:
            module = build_candidate(spec, get_submodule(teacher, slot.path))
        set_submodule(student, slot.path, module)
    return student


def save_student(
    student: nn.Module,
    path: str | Path,
    model: Mapping,
    slots: list[Slot],
    choices: Mapping[str, CandidateSpec],
    plugins: list[str] | None = None,
    metadata: Mapping | None = None,
) -> None:
    """Write ``path/arch.json`` and ``path/weights.safetensors``.

    ``model`` describes the teacher's construction: ``{"name", "num_classes", "in_chans", "kwargs"}`` of a
    timm model, or ``{"source": "factory", "factory", "kwargs", ...}`` (``user_model.module_description``).
    """
    path = Path(path)
    arch = {
        "format": ARCH_FORMAT,
        "model": dict(model),
        "replacements": [
            {"slot": s.name, "path": s.path, "spec": choices[s.name].to_dict()}
            for s in slots
            if choices[s.name].family != "keep"
        ],
        "plugins": [str(Path(p).resolve()) if p.endswith(".py") else p for p in plugins or []],
        "metadata": dict(metadata or {}),
    }
    save_tensors(path / "weights.safetensors", student.state_dict())
    write_json(path / "arch.json", arch)


def student_deployment(path: str | Path) -> tuple[LatencyTarget, PrecisionPlan] | None:
    """The target and precision plan a saved student was chosen for (``metadata.deployment`` of its
    ``arch.json``), or None for a student saved without one."""
    arch = read_json(Path(path) / "arch.json")
    d = (arch.get("metadata") or {}).get("deployment")
    if not d:
        return None
    return LatencyTarget.from_dict(d["target"]), PrecisionPlan.from_dict(d["plan"])


def teacher_architecture(model_desc: dict, arch_file: Path, allow_plugins: bool) -> nn.Module:
    """The teacher's architecture (random weights) an ``arch.json``'s ``model`` describes: a timm
    model, or a factory's (run only with ``allow_plugins``)."""
    from .models import create_model

    m = model_desc
    if m.get("source") == "factory":
        check_allowed(f"{arch_file} (its architecture comes from teacher.factory)", [m["factory"]], allow_plugins)
        return resolve_factory(m["factory"])(**m.get("kwargs", {}))
    return create_model(m["name"], m["num_classes"], m["in_chans"], m.get("kwargs"), pretrained=False)


def load_student(path: str | Path, allow_plugins: bool = False) -> nn.Module:
    """Rebuild a saved student from ``path/arch.json`` and load ``path/weights.safetensors``.

    Needs neither the teacher's weights nor the run directory. Returned in eval mode. A network
    saved by ``hant prune`` (format ``hant-pruned/1``) loads too. A student whose ``arch.json``
    names plugins (Python files or modules, i.e. code that is executed on import) is refused
    unless ``allow_plugins=True``, and so is one whose architecture a factory (``model.source: factory``)
    builds.
    """
    path = Path(path)
    arch_file, weights_file = path / "arch.json", path / "weights.safetensors"
    if not arch_file.is_file() or not weights_file.is_file():
        raise HantError(f"{str(path)!r} is not a saved student: it needs arch.json and weights.safetensors")
    arch = read_json(arch_file)
    if arch.get("format") == PRUNED_FORMAT:
        from .pruning.save import load_pruned

        return load_pruned(path, allow_plugins=allow_plugins)
    if arch.get("format") != ARCH_FORMAT:
        raise HantError(f"{arch_file} has format {arch.get('format')!r}; this hant reads {ARCH_FORMAT!r}")
    plugins = arch.get("plugins") or []
    if plugins and not allow_plugins:
        raise PluginError(
            f"{arch_file} names plugins {plugins}, which are Python code run on import; read them, then "
            "pass allow_plugins=True (CLI: --allow-plugins) if you trust them"
        )
    if plugins:
        load_plugins(plugins)
    model = teacher_architecture(arch["model"], arch_file, allow_plugins)
    for item in arch["replacements"]:
        spec = CandidateSpec.from_dict(item["spec"])
        set_submodule(model, item["path"], build_candidate(spec, get_submodule(model, item["path"])))
    return load_file(model, weights_file, "it must match the architecture in arch.json").eval()
