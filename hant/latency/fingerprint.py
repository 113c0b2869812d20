"""Device fingerprint: what a latency number depends on besides the network (hardware, runtime versions)."""
from __future__ import annotations

import logging
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import torch

from ..io import hash_obj
from .allocator import allocator_policy
from .runners import timer_name
from .isa import cpu_features
from .runtime import (
    cuda_index, import_onnxruntime, import_openvino, openvino_capabilities, ort_providers, provider_names, torch_device,
)
from .target import LatencyTarget

log = logging.getLogger(__name__)


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Hardware", "Processor", "cpu model", "cpu"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if m and m.group(1).strip():
            return m.group(1).strip()
    impl = re.search(r"^CPU implementer\s*:\s*(\S+)", text, re.MULTILINE)
    part = re.search(r"^CPU part\s*:\s*(\S+)", text, re.MULTILINE)
    if impl and part:  # aarch64 kernels name no model, only these ids
        return f"arm implementer {impl.group(1)} part {part.group(1)}"
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown cpu"


def _nvidia_driver() -> str:
    try:
        m = re.search(r"Kernel Module\s+(?:for\s+\S+\s+)?([\d.]+)", Path("/proc/driver/nvidia/version").read_text())
        if m:
            return m.group(1)
    except OSError:
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def _gpu_info(target: LatencyTarget) -> dict[str, Any]:
    torch_device(target)  # raises LatencyError when the GPU is missing
    idx = cuda_index(target.device)
    major, minor = torch.cuda.get_device_capability(idx)
    info: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(idx),
        "gpu_capability": f"{major}.{minor}",
        "gpu_driver": _nvidia_driver(),
        "cuda": torch.version.cuda or "",
        "cudnn": torch.backends.cudnn.version() or 0,
    }
    if getattr(torch.version, "hip", None):
        info["hip"] = torch.version.hip
    return info


def device_fingerprint(target: LatencyTarget) -> dict[str, Any]:
    """The hardware and software a latency on ``target`` depends on, as a flat JSON-able dict.

    CPU model, logical cores, the target's threads, the torch version, the allocator policy
    (:mod:`.allocator`) and the timer always; the onnxruntime
    version and chosen providers for that backend; the OpenVINO version and its CPU plugin's
    capabilities for that one; the CPU's int8/bf16 ISA features (VNNI, AMX, ...) on the CPU; GPU name, capability, driver, CUDA and cuDNN
    versions on a GPU. Raises LatencyError when the target's device or runtime is missing here.
    """
    fp: dict[str, Any] = {
        "cpu": _cpu_model(),
        "machine": platform.machine(),
        "os": platform.system(),
        "logical_cores": os.cpu_count() or 0,
        "threads": target.threads,
        "torch": torch.__version__,
        "allocator": allocator_policy(),
        "timer": timer_name(target),
    }
    if target.device == "cpu":
        fp["isa"] = list(cpu_features())
    if target.uses_onnxruntime:
        fp["onnxruntime"] = import_onnxruntime().__version__
        fp["onnxruntime_providers"] = provider_names(ort_providers(target))
    if target.backend == "openvino":
        fp["openvino"] = import_openvino().get_version()
        fp["openvino_capabilities"] = openvino_capabilities()
        if target.quantizer == "onnxruntime":  # its QDQ graph is what OpenVINO compiles
            fp["onnxruntime"] = import_onnxruntime().__version__
    if target.device != "cpu":
        fp.update(_gpu_info(target))
    return fp


def fingerprint_id(fp: dict[str, Any]) -> str:
    """Stable short hash of a fingerprint (independent of key order)."""
    return hash_obj(fp)


def describe_fingerprint(fp: dict[str, Any]) -> str:
    """One-line human description, e.g. ``Intel Xeon (2 cores, 1 thread), torch 2.5``."""
    threads = fp.get("threads", "?")
    parts = [f"{fp.get('cpu', 'unknown cpu')} ({fp.get('logical_cores', '?')} cores, {threads} thread(s))"]
    if "gpu" in fp:
        parts.insert(0, f"{fp['gpu']} (driver {fp.get('gpu_driver', '?')}, CUDA {fp.get('cuda', '?')})")
    parts.append(f"torch {fp.get('torch', '?')}")
    if "onnxruntime" in fp:
        parts.append(f"onnxruntime {fp['onnxruntime']}")
    if "openvino" in fp:
        parts.append(f"OpenVINO {fp['openvino']}")
    if "isa" in fp:
        parts.append("ISA " + ("+".join(fp["isa"]) or "baseline"))
    return ", ".join(parts)
