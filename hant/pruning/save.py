"""Saving and loading a pruned network: the teacher's architecture, each group's kept channels, weights."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import PluginError
from ..io import load_tensors, read_json, save_tensors, write_json
from ..ops_zoo import load_plugins
from ..student import PRUNED_FORMAT, teacher_architecture
from .apply import first_channels, pruned_copy
from .groups import trace_groups

__all__ = ["PRUNED_FORMAT", "load_pruned", "save_pruned"]

def save_pruned(model: nn.Module, path: Path, model_desc: dict, slot_paths: list[str], counts: dict[str, int],
                input_shape: tuple[int, ...], metadata: dict | None = None, plugins: list[str] | None = None) -> None:
    """Write ``arch.json`` (timm name and kwargs, slot paths, group → kept channels, the plugins that
    register the model, if any) and the weights."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_tensors(path / "weights.safetensors", {k: v.contiguous() for k, v in model.state_dict().items()})
    write_json(path / "arch.json", {"format": PRUNED_FORMAT, "model": model_desc, "slot_paths": slot_paths,
                                    "counts": counts, "input_shape": list(input_shape),
                                    "plugins": [str(Path(p).resolve()) if p.endswith(".py") else p for p in plugins or []],
                                    **(metadata or {})})


def load_pruned(path: Path, allow_plugins: bool = False) -> nn.Module:
    """The saved pruned network, in eval mode: the teacher's architecture cut to the saved widths
    (``hant.load_student`` also reads it). Plugins it names run only with ``allow_plugins``."""
    arch = read_json(Path(path) / "arch.json")
    if arch.get("plugins"):
        if not allow_plugins:
            raise PluginError(f"{Path(path) / 'arch.json'} names plugins {arch['plugins']}, which are Python code run "
                              "on import; read them, then pass allow_plugins=True (CLI: --allow-plugins) if you trust them")
        load_plugins(arch["plugins"])
    net = teacher_architecture(arch["model"], Path(path) / "arch.json", allow_plugins).eval()
    graph = trace_groups(net, torch.zeros(2, *arch["input_shape"]), arch["slot_paths"], check=False)
    net = pruned_copy(net, graph.groups, first_channels(arch["counts"]))
    net.load_state_dict(load_tensors(Path(path) / "weights.safetensors"))
    return net.eval()
