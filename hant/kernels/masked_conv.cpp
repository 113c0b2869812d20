// A 2-D convolution computed only at the kept output pixels of a fixed spatial mask.
//
// The kept pixels' input patches are gathered as rows [P, K] (P = batch items x kept pixels,
// K = Cin*kh*kw; in the weight's own (ci, ky, kx) order for NCHW inputs, so the weight is used as
// a view, and in (ky, kx, ci) order for channels-last ones, so each tap is one contiguous run of
// Cin values), multiplied by the weight in ATen GEMMs (the BLAS torch links) and scattered into the
// output. Rows go through the GEMM in chunks that stay in a core's L2 cache. A skipped pixel takes
// the value the convolution gives a zero input (the bias, or 0), written only where skipped.
// Rows-times-weight is the GEMM orientation measured fastest here (MKL, AVX2): its efficiency
// stays near 75-80 GFLOP/s whatever the number of kept pixels, where weight-times-columns fell to
// 37-60 GFLOP/s at pixel counts that are not multiples of the BLAS tile.
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <algorithm>
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

// Where the kept output pixels read their input: the top-left input coordinate of each one's
// receptive field, computed once per call instead of once per gathered value.
struct Origins {
  std::vector<int64_t> y, x;
};

Origins origins(const int64_t* idx, int64_t kept, const Geometry& g) {
  Origins o{std::vector<int64_t>(kept), std::vector<int64_t>(kept)};
  for (int64_t p = 0; p < kept; ++p) {
    o.y[p] = (idx[p] / g.ow) * g.sh - g.ph;
    o.x[p] = (idx[p] % g.ow) * g.sw - g.pw;
  }
  return o;
}

// Calls fn(i, b, p) for each flat row r = r0 + i of rows r0..r1, where row r = b * kept + p
// (batch item b, kept pixel p).
template <typename F>
void for_each_row(int64_t r0, int64_t r1, int64_t kept, const F& fn) {
  at::parallel_for(r0, r1, 1, [&](int64_t a, int64_t z) {
    for (int64_t r = a; r < z; ++r) fn(r - r0, r / kept, r % kept);
  });
}

// Rows [r1 - r0, K] (K ordered ci, ky, kx: the weight's own order) for the flat (batch item,
// kept pixel) rows r0..r1 (row r = b * kept + p) of an NCHW input.
template <typename T>
void gather_nchw(const T* in, const Origins& o, int64_t kept, const Geometry& g, int64_t r0, int64_t r1, T* rows) {
  const int64_t K = g.cin * g.kh * g.kw;
  for_each_row(r0, r1, kept, [&](int64_t i, int64_t b, int64_t p) {
    T* dst = rows + i * K;
    for (int64_t ci = 0; ci < g.cin; ++ci) {
      const T* plane = in + (b * g.cin + ci) * g.h * g.w;
      for (int64_t ky = 0; ky < g.kh; ++ky) {
        const int64_t iy = o.y[p] + ky * g.dh;
        const bool row_in = iy >= 0 && iy < g.h;
        for (int64_t kx = 0; kx < g.kw; ++kx) {
          const int64_t ix = o.x[p] + kx * g.dw;
          *dst++ = (row_in && ix >= 0 && ix < g.w) ? plane[iy * g.w + ix] : T(0);
        }
      }
    }
  });
}

// Result rows [r1 - r0, Cout] into the NCHW output.
template <typename T>
void scatter_nchw(const T* res, const int64_t* idx, int64_t kept, const Geometry& g, int64_t r0, int64_t r1, T* out) {
  const int64_t HW = g.oh * g.ow;
  at::parallel_for(0, g.cout, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const T* src = res + c;
      for (int64_t r = r0; r < r1;) {
        const int64_t b = r / kept, p0 = r % kept, p1 = std::min(kept, p0 + (r1 - r));
        T* dst = out + (b * g.cout + c) * HW;
        for (int64_t p = p0; p < p1; ++p, src += g.cout) dst[idx[p]] = *src;
        r += p1 - p0;
      }
    }
  });
}

// Rows [r1 - r0, K] (K ordered ky, kx, ci) for the flat rows r0..r1 of a channels-last input.
template <typename T>
void gather_nhwc(const T* in, const Origins& o, int64_t kept, const Geometry& g, int64_t r0, int64_t r1, T* rows) {
  const int64_t K = g.kh * g.kw * g.cin;
  for_each_row(r0, r1, kept, [&](int64_t i, int64_t b, int64_t p) {
    T* dst = rows + i * K;
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      const int64_t iy = o.y[p] + ky * g.dh;
      for (int64_t kx = 0; kx < g.kw; ++kx, dst += g.cin) {
        const int64_t ix = o.x[p] + kx * g.dw;
        if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) {
          std::memcpy(dst, in + ((b * g.h + iy) * g.w + ix) * g.cin, sizeof(T) * g.cin);
        } else {
          std::memset(dst, 0, sizeof(T) * g.cin);
        }
      }
    }
  });
}

template <typename T>
void scatter_nhwc(const T* res, const int64_t* idx, int64_t kept, const Geometry& g, int64_t r0, int64_t r1, T* out) {
  const int64_t HW = g.oh * g.ow;
  for_each_row(r0, r1, kept, [&](int64_t i, int64_t b, int64_t p) {
    std::memcpy(out + (b * HW + idx[p]) * g.cout, res + i * g.cout, sizeof(T) * g.cout);
  });
}

// Every skipped output pixel gets the bias (or 0): the value the convolution gives a zero input.
template <typename T>
void fill_skipped(const int64_t* idx, int64_t kept, const Geometry& g, const T* bias, bool nhwc, T* out) {
  const int64_t HW = g.oh * g.ow;
  std::vector<char> is_kept(HW, 0);
  for (int64_t p = 0; p < kept; ++p) is_kept[idx[p]] = 1;
  std::vector<int64_t> skipped;
  skipped.reserve(HW - kept);
  for (int64_t o = 0; o < HW; ++o)
    if (!is_kept[o]) skipped.push_back(o);
  if (skipped.empty()) return;
  for (int64_t b = 0; b < g.n; ++b) {
    for (int64_t c = 0; c < g.cout; ++c) {
      const T v = bias ? bias[c] : T(0);
      if (nhwc) {
        T* base = out + b * HW * g.cout + c;
        for (int64_t o : skipped) base[o * g.cout] = v;
      } else {
        T* base = out + (b * g.cout + c) * HW;
        for (int64_t o : skipped) base[o] = v;
      }
    }
  }
}

// Rows (batch item, kept pixel) per GEMM: the gathered block of one chunk stays within about
// CHUNK_BYTES, the size of a core's L2 cache, where the GEMM reads it back. A weight larger than
// that is not split over chunks (each chunk would stream it from memory again).
constexpr int64_t CHUNK_BYTES = 512 * 1024;

int64_t chunk_rows(int64_t rows, int64_t K, int64_t cout, int64_t elem) {
  if (cout * K * elem > CHUNK_BYTES) return rows;
  return std::max<int64_t>(64, CHUNK_BYTES / (K * elem));
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
  const bool has_bias = bias.has_value() && bias->defined();
  const at::Tensor b = has_bias ? bias->contiguous() : at::Tensor();
  at::Tensor out = at::empty({g.n, g.cout, g.oh, g.ow}, x.options().memory_format(format));
  const int64_t K = g.cin * g.kh * g.kw, P = g.n * kept;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "masked_conv2d", [&] {
    const int64_t* ip = idx.data_ptr<int64_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    fill_skipped<scalar_t>(ip, kept, g, has_bias ? b.data_ptr<scalar_t>() : nullptr, nhwc, op);
    if (kept == 0) return;
    const Origins o = origins(ip, kept, g);
    const int64_t step = chunk_rows(P, K, g.cout, sizeof(scalar_t));
    // [K, Cout]: a view of the weight for NCHW, a (ky, kx, ci)-ordered copy for channels-last.
    const at::Tensor w = nhwc ? weight.permute({0, 2, 3, 1}).reshape({g.cout, K}).t() : weight.reshape({g.cout, K}).t();
    const auto plain = x.options().memory_format(at::MemoryFormat::Contiguous);
    at::Tensor rows = at::empty({std::min(step, P), K}, plain), res = at::empty({std::min(step, P), g.cout}, plain);
    const scalar_t* xp = x.data_ptr<scalar_t>();
    for (int64_t r0 = 0; r0 < P; r0 += step) {
      const int64_t r1 = std::min(P, r0 + step);
      at::Tensor rows_c = rows.narrow(0, 0, r1 - r0), res_c = res.narrow(0, 0, r1 - r0);
      if (nhwc) gather_nhwc<scalar_t>(xp, o, kept, g, r0, r1, rows_c.data_ptr<scalar_t>());
      else gather_nchw<scalar_t>(xp, o, kept, g, r0, r1, rows_c.data_ptr<scalar_t>());
      if (has_bias) at::addmm_out(res_c, b, rows_c, w); else at::mm_out(res_c, rows_c, w);
      if (nhwc) scatter_nhwc<scalar_t>(res_c.data_ptr<scalar_t>(), ip, kept, g, r0, r1, op);
      else scatter_nchw<scalar_t>(res_c.data_ptr<scalar_t>(), ip, kept, g, r0, r1, op);
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
