"""The student: the teacher with chosen slots replaced; saved as arch.json + weights.safetensors.

``arch.json`` holds everything needed to rebuild the network without the teacher's weights or
the run directory: the timm model and its arguments (or, for a teacher given as a module, the
factory reference that builds its architecture: ``model.source`` is ``factory``), and for each
replaced slot its candidate spec, and for a student on narrower residual streams (the op zoo's
``stream_cut`` family) each stream's kept channels. ``load_student`` rebuilds that structure and
loads ``weights.safetensors`` into it.
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
from .ops_zoo.families.stream_cut import StreamCut
from .latency.target import LatencyTarget
from .pruning.streams import StreamLayout
from .slots import Slot, get_submodule, set_submodule
from .user_code import check_allowed, resolve_factory
from .weights import load_file

ARCH_FORMAT = "hant-student/1"
PRUNED_FORMAT = "hant-pruned/1"
"""What ``hant prune`` writes (``hant.pruning.save``); ``load_student`` reads both."""


def _deployable(module: nn.Module) -> nn.Module:
    """The module a student holds for a candidate: a ``stream_cut`` candidate's cut block itself."""
    return module.inner if isinstance(module, StreamCut) else module


def cut_streams(network: nn.Module, slots: list[Slot], input_shape: tuple[int, ...], counts: Mapping[str, int]) -> nn.Module:
    """A copy of ``network`` whose residual streams keep their first ``counts[stream]`` channels."""
    return StreamLayout.trace(network, input_shape, [s.path for s in slots]).cut(network, counts)


def assemble_student(
    teacher: nn.Module,
    slots: list[Slot],
    choices: Mapping[str, CandidateSpec],
    candidate_modules: Mapping[str, nn.Module] | None = None,
    streams: Mapping[str, int] | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> nn.Module:
    """A copy of ``teacher`` with each slot's module replaced by its chosen candidate.

    ``candidate_modules`` (slot name → module) supplies trained modules; slots without one get
    a module freshly built from its spec (keep: the teacher's own block). With ``streams`` (stream →
    kept channels, and the network's per-sample ``input_shape``) the copy is first cut to those widths.
    """
    if streams:
        if input_shape is None:
            raise HantError("a student on cut streams needs the network's input shape to trace them")
        student = cut_streams(teacher, slots, input_shape, streams)
    else:
        student = copy.deepcopy(teacher)
    for slot in slots:
        spec = choices[slot.name]
        if spec.family == "keep":
            continue
        if candidate_modules is not None and slot.name in candidate_modules:
            module = candidate_modules[slot.name]
        else:
            module = build_candidate(spec, get_submodule(teacher, slot.path))
        set_submodule(student, slot.path, _deployable(module))
    return student


def save_student(
    student: nn.Module,
    path: str | Path,
    model: Mapping,
    slots: list[Slot],
    choices: Mapping[str, CandidateSpec],
    plugins: list[str] | None = None,
    metadata: Mapping | None = None,
    streams: Mapping[str, int] | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> None:
    """Write ``path/arch.json`` and ``path/weights.safetensors``; ``streams`` and ``input_shape`` as
    :func:`assemble_student` took them.

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
    if streams:
        arch["streams"] = {"counts": dict(streams), "input_shape": list(input_shape or ()),
                           "slot_paths": [s.path for s in slots]}
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
    full = teacher_architecture(arch["model"], arch_file, allow_plugins)
    streams = arch.get("streams")
    if streams:
        layout = StreamLayout.trace(full, streams["input_shape"], streams["slot_paths"])
        model = layout.cut(full, streams["counts"])
    else:
        model = full
    for item in arch["replacements"]:
        spec = CandidateSpec.from_dict(item["spec"])
        set_submodule(model, item["path"], _deployable(build_candidate(spec, get_submodule(full, item["path"]))))
    return load_file(model, weights_file, "it must match the architecture in arch.json").eval()
