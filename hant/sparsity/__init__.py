"""Semi-structured activation sparsity: whole output pixels of a convolution skipped by a fixed mask."""

from .masked import MaskedConv2d, SparseBlock, check_ratio, maskable, sparsify_block
from .masks import draw_mask, ratio_at

__all__ = ["MaskedConv2d", "SparseBlock", "check_ratio", "draw_mask", "maskable", "ratio_at", "sparsify_block"]
