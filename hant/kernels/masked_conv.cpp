// A 2-D convolution computed only at the kept output pixels of a fixed spatial mask.
//
// The kept pixels' input patches are gathered into one matrix (all batch items together),
// multiplied by the weight in a single ATen GEMM (the BLAS torch links), and scattered into an
// output that was first filled with the bias: a skipped pixel takes the value the convolution
// gives a zero input. NCHW inputs gather columns [K, P] (K = Cin*kh*kw in weight order);
// channels-last inputs gather rows [P, K] with K ordered (ky, kx, ci), so each tap is one
// contiguous run of Cin values and each result row is one contiguous run of Cout values.
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <cstring>
#include <vector>

namespace {

struct Geometry {
  int64_t n, cin, h, w, cout, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw;
};

Geometry geometry(const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                  at::IntArrayRef padding, at::IntArrayRef dilation) {
  TORCH_CHECK(input.dim() == 4 && weight.dim() == 4, "masked_conv2d needs a 4-D input and a 4-D weight");
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2,
              "masked_conv2d needs two values each for stride, padding and dilation");
  TORCH_CHECK(weight.size(1) == input.size(1), "masked_conv2d supports groups=1 only (weight has ",
              weight.size(1), " input channels, input has ", input.size(1), ")");
  Geometry g{input.size(0), input.size(1), input.size(2), input.size(3), weight.size(0), weight.size(2),
             weight.size(3), 0, 0, stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1]};
  g.oh = (g.h + 2 * g.ph - g.dh * (g.kh - 1) - 1) / g.sh + 1;
  g.ow = (g.w + 2 * g.pw - g.dw * (g.kw - 1) - 1) / g.sw + 1;
  TORCH_CHECK(g.oh > 0 && g.ow > 0, "masked_conv2d: the output would be empty");
  return g;
}

template <typename T>
void gather_nchw(const T* in, const int64_t* idx, int64_t kept, const Geometry& g, T* cols) {
  const int64_t P = g.n * kept, K = g.cin * g.kh * g.kw;
  at::parallel_for(0, K, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t ci = k / (g.kh * g.kw), ky = (k / g.kw) % g.kh, kx = k % g.kw;
      T* row = cols + k * P;
      for (int64_t b = 0; b < g.n; ++b) {
        const T* plane = in + (b * g.cin + ci) * g.h * g.w;
        for (int64_t p = 0; p < kept; ++p) {
          const int64_t o = idx[p];
          const int64_t iy = (o / g.ow) * g.sh - g.ph + ky * g.dh;
          const int64_t ix = (o % g.ow) * g.sw - g.pw + kx * g.dw;
          row[b * kept + p] = (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) ? plane[iy * g.w + ix] : T(0);
        }
      }
    }
  });
}

template <typename T>
void scatter_nchw(const T* res, const int64_t* idx, int64_t kept, const Geometry& g, T* out) {
  const int64_t P = g.n * kept, HW = g.oh * g.ow;
  at::parallel_for(0, g.cout * g.n, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t c = r / g.n, b = r % g.n;
      const T* src = res + c * P + b * kept;
      T* dst = out + (b * g.cout + c) * HW;
      for (int64_t p = 0; p < kept; ++p) dst[idx[p]] = src[p];
    }
  });
}

template <typename T>
void gather_nhwc(const T* in, const int64_t* idx, int64_t kept, const Geometry& g, T* rows) {
  const int64_t K = g.kh * g.kw * g.cin;
  at::parallel_for(0, g.n * kept, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / kept, o = idx[r % kept];
      const int64_t y0 = (o / g.ow) * g.sh - g.ph, x0 = (o % g.ow) * g.sw - g.pw;
      T* dst = rows + r * K;
      for (int64_t ky = 0; ky < g.kh; ++ky) {
        const int64_t iy = y0 + ky * g.dh;
        for (int64_t kx = 0; kx < g.kw; ++kx, dst += g.cin) {
          const int64_t ix = x0 + kx * g.dw;
          if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) {
            std::memcpy(dst, in + ((b * g.h + iy) * g.w + ix) * g.cin, sizeof(T) * g.cin);
          } else {
            std::memset(dst, 0, sizeof(T) * g.cin);
          }
        }
      }
    }
  });
}

template <typename T>
void scatter_nhwc(const T* res, const int64_t* idx, int64_t kept, const Geometry& g, T* out) {
  const int64_t HW = g.oh * g.ow;
  at::parallel_for(0, g.n * kept, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / kept;
      std::memcpy(out + (b * HW + idx[r % kept]) * g.cout, res + r * g.cout, sizeof(T) * g.cout);
    }
  });
}

at::Tensor masked_conv2d(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                         const at::Tensor& kept_idx, at::IntArrayRef stride, at::IntArrayRef padding,
                         at::IntArrayRef dilation) {
  TORCH_CHECK(input.device().is_cpu(), "masked_conv2d runs on the CPU only");
  TORCH_CHECK(kept_idx.scalar_type() == at::kLong && kept_idx.dim() == 1,
              "masked_conv2d needs kept_idx as a 1-D int64 tensor of flat output-pixel indices");
  const Geometry g = geometry(input, weight, stride, padding, dilation);
  const bool nhwc = input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  const auto format = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const at::Tensor x = input.contiguous(format);
  const at::Tensor idx = kept_idx.contiguous();
  const int64_t kept = idx.numel();
  if (kept > 0) {
    const int64_t lo = idx.min().item<int64_t>(), hi = idx.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < g.oh * g.ow, "masked_conv2d: kept_idx must lie in [0, ", g.oh * g.ow, ")");
  }
  at::Tensor out = at::empty({g.n, g.cout, g.oh, g.ow}, x.options().memory_format(format));
  if (bias.has_value() && bias->defined()) {
    out.copy_(bias->view({1, g.cout, 1, 1}).expand_as(out));
  } else {
    out.zero_();
  }
  if (kept == 0) return out;
  const int64_t K = g.cin * g.kh * g.kw, P = g.n * kept;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "masked_conv2d", [&] {
    const int64_t* ip = idx.data_ptr<int64_t>();
    if (nhwc) {
      at::Tensor rows = at::empty({P, K}, x.options().memory_format(at::MemoryFormat::Contiguous));
      gather_nhwc<scalar_t>(x.data_ptr<scalar_t>(), ip, kept, g, rows.data_ptr<scalar_t>());
      const at::Tensor w = weight.permute({0, 2, 3, 1}).reshape({g.cout, K});  // (ky, kx, ci) order
      at::Tensor res = bias.has_value() && bias->defined() ? at::addmm(*bias, rows, w.t()) : at::mm(rows, w.t());
      scatter_nhwc<scalar_t>(res.contiguous().data_ptr<scalar_t>(), ip, kept, g, out.data_ptr<scalar_t>());
    } else {
      at::Tensor cols = at::empty({K, P}, x.options());
      gather_nchw<scalar_t>(x.data_ptr<scalar_t>(), ip, kept, g, cols.data_ptr<scalar_t>());
      const at::Tensor w = weight.reshape({g.cout, K});
      at::Tensor res = bias.has_value() && bias->defined() ? at::addmm(bias->unsqueeze(1), w, cols) : at::mm(w, cols);
      scatter_nchw<scalar_t>(res.contiguous().data_ptr<scalar_t>(), ip, kept, g, out.data_ptr<scalar_t>());
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(hant, m) {
  m.def("masked_conv2d(Tensor input, Tensor weight, Tensor? bias, Tensor kept_idx, int[] stride, int[] padding, "
        "int[] dilation) -> Tensor");
}

TORCH_LIBRARY_IMPL(hant, CPU, m) { m.impl("masked_conv2d", &masked_conv2d); }
