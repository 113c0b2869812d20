"""The built-in candidate families; importing this package registers them."""

from . import act_sparse, conv, lowrank, mbconv, pruned, stream_cut, teacher, transformer  # noqa: F401
