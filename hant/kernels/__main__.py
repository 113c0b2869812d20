"""``python -m hant.kernels``: compile the C++ kernels now (CI does this before the tests)."""
import sys

from . import KernelNotBuilt, build_kernels

try:
    sys.stdout.write(f"hant kernels built in {build_kernels()}\n")
except KernelNotBuilt as e:
    sys.stderr.write(f"error: {e}\n")
    sys.exit(1)
