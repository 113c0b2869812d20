"""The compiled masked convolution equals the dense convolution with skipped pixels set to the bias."""
import pytest
import torch
import torch.nn.functional as F

from hant.kernels import masked_conv2d


def _reference(x, w, b, mask, stride, padding, dilation):
    y = F.conv2d(x, w, b, stride, padding, dilation)
    fill = (b if b is not None else torch.zeros(w.shape[0], dtype=x.dtype)).view(1, -1, 1, 1).expand_as(y)
    return torch.where(mask.view(1, 1, *y.shape[2:]), y, fill)


CASES = [
    # (cin, cout, k, stride, padding, dilation, h, w)
    (8, 16, 3, 1, 1, 1, 9, 7),
    (8, 16, 3, 2, 1, 1, 11, 13),
    (5, 6, 1, 1, 0, 1, 7, 5),
    (5, 6, 1, 2, 0, 1, 9, 9),
    (4, 8, 3, 1, 0, 1, 8, 8),
    (4, 8, 3, 1, 2, 2, 7, 9),
    (3, 4, 7, 2, 3, 1, 15, 15),
]


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("kept", [0.0, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_kernel_matches_masked_dense(layout, kept, case, with_bias):
    cin, cout, k, s, p, d, h, w = case
    gen = torch.Generator().manual_seed(hash((case, kept)) % 2**31)
    x = torch.randn(2, cin, h, w, generator=gen)
    weight = torch.randn(cout, cin, k, k, generator=gen) / (cin * k * k) ** 0.5
    bias = torch.randn(cout, generator=gen) if with_bias else None
    oh, ow = (h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1
    mask = torch.rand(oh * ow, generator=gen) < kept
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    idx = mask.nonzero().flatten()
    out = masked_conv2d(x, weight, bias, idx, (s, s), (p, p), (d, d))
    expected = _reference(x, weight, bias, mask.view(oh, ow), (s, s), (p, p), (d, d))
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-5, rtol=1e-5), (out - expected).abs().max()
    if layout == "nhwc":
        assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_kernel_matches_masked_dense_over_several_gemm_chunks(layout):
    # 4 x 48 x 48 kept rows of K = 36 values each: more than one L2-sized chunk of rows per call
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(4, 4, 48, 48, generator=gen)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(8, 4, 3, 3, generator=gen) / 6, torch.randn(8, generator=gen)
    mask = torch.rand(48 * 48, generator=gen) < 0.9
    out = masked_conv2d(x, weight, bias, mask.nonzero().flatten(), (1, 1), (1, 1))
    expected = _reference(x, weight, bias, mask.view(48, 48), (1, 1), (1, 1), (1, 1))
    assert torch.allclose(out, expected, atol=1e-5, rtol=1e-5), (out - expected).abs().max()


def test_kernel_rejects_grouped_weight():
    x = torch.randn(1, 4, 5, 5)
    with pytest.raises(RuntimeError, match="groups=1"):
        masked_conv2d(x, torch.randn(4, 1, 3, 3), None, torch.arange(25), (1, 1), (1, 1))


def test_kernel_rejects_out_of_range_index():
    x = torch.randn(1, 2, 5, 5)
    with pytest.raises(RuntimeError, match="kept_idx"):
        masked_conv2d(x, torch.randn(3, 2, 3, 3), None, torch.tensor([25]), (1, 1), (1, 1))
