"""Prune plans of timm's transformer blocks: the MLP's hidden units and the attention heads.

Registered on first use of ``pruning.prune_plans``; a class missing from the installed timm is
skipped. Convolutional blocks need no plan: their channel groups come from Torch-Pruning's graph.
"""

from __future__ import annotations

import importlib
from typing import Callable

from torch import nn

from .pruning import PrunePlan


def _timm_class(module: str, name: str) -> type | None:
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _is_norm(m: nn.Module | None) -> bool:
    return isinstance(m, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm))


def _mlp_plan(mlp_path: str, mlp: nn.Module, role: str) -> PrunePlan | None:
    """The hidden units of a timm ``Mlp`` (fc1 -> act -> norm -> fc2), if it has no extra layers."""
    if type(mlp).__name__ != "Mlp" or not hasattr(mlp, "fc1") or not hasattr(mlp, "fc2"):
        return None
    norm = getattr(mlp, "norm", None)
    norms = [f"{mlp_path}.norm"] if _is_norm(norm) else []
    if norm is not None and not norms and not isinstance(norm, nn.Identity):
        return None
    return PrunePlan(out_convs=[f"{mlp_path}.fc1"], norms=norms, in_convs=[f"{mlp_path}.fc2"], role=role)


def _vit_block(block: nn.Module) -> list[PrunePlan]:
    plans = [_mlp_plan("mlp", block.mlp, "mlp")]
    attn = block.attn
    if type(attn).__name__ == "Attention" and hasattr(attn, "qkv") and hasattr(attn, "proj"):
        norms = ["attn.norm"] if _is_norm(getattr(attn, "norm", None)) else []
        extra = ["attn.gate"] if isinstance(getattr(attn, "gate", None), nn.Linear) else []
        plans.append(
            PrunePlan(
                out_convs=["attn.qkv"],
                norms=norms,
                in_convs=["attn.proj"],
                extra_out=extra,
                unit=attn.head_dim,
                attention="attn",
                role="heads",
            )
        )
    return plans


_TIMM_PLANS: tuple[tuple[str, str, Callable[[nn.Module], list[PrunePlan]]], ...] = (
    ("timm.models.vision_transformer", "Block", _vit_block),
)


def register_timm_plans(register: Callable[[type], Callable]) -> None:
    """Register the plans above with ``register`` (``pruning.register_prune_plan``)."""
    for module, name, fn in _TIMM_PLANS:
        cls = _timm_class(module, name)
        if cls is not None:
            register(cls)(fn)
