// Fused softmax cross-entropy: operator schemas and the CPU kernels.
//
//   fused_cross_entropy_forward(logits[N, V], target[N], ignore_index) -> (nll[N], smooth[N], lse[N])
//     nll    = lse - logits[target]        (= -log p[target])
//     smooth = V * lse - sum_v logits[v]   (= sum_v -log p[v], fairseq's smoothing term)
//     lse    = log sum_v exp(logits[v])    (saved by the caller for the backward)
//   fused_cross_entropy_backward(grad_nll[N], grad_smooth[N], logits, target, lse, ignore_index)
//     -> grad_logits[N, V] = grad_nll * (p - onehot(target)) + grad_smooth * (V * p - 1)
//
// Rows whose target is ignore_index (padding) are skipped: nll = smooth = lse = 0, zero gradient.
//
// The point of the kernel is what it does not do: it never materializes the [N, V] log-probabilities
// (log_softmax + nll_loss keeps an fp32 copy for the backward, plus an fp32 copy of bf16/fp16 logits,
// and two more [N, V] fp32 buffers in the backward). Per row, the forward reads the logits once from
// memory in L1-sized chunks, keeping a running max and sum of exp in fp32 (online log-sum-exp); the
// backward reads them once more and writes the gradient in the logits' dtype. Accumulation is in
// at::opmath_type (fp32 for fp32/bf16/fp16, fp64 for fp64, which gradcheck uses).
// The CUDA kernels are in fused_cross_entropy_cuda.cu.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

namespace fairseq_lite {
// Input checks shared with the CUDA kernels (fused_cross_entropy_cuda.cu).
void check_fused_cross_entropy_forward_inputs(const at::Tensor& logits, const at::Tensor& target) {
  const char* op = "fused_cross_entropy";
  TORCH_CHECK(logits.dim() == 2, op, ": logits must be 2-D [N, V], got shape ", logits.sizes());
  TORCH_CHECK(logits.size(1) > 0, op, ": logits need at least one class (V >= 1), got shape ", logits.sizes());
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()), op, ": logits must be floating point, got ",
              logits.scalar_type());
  TORCH_CHECK(target.scalar_type() == at::kLong, op, ": target must be int64, got ", target.scalar_type());
  TORCH_CHECK(target.dim() == 1 && target.size(0) == logits.size(0), op, ": target must be [N] with N = ",
              logits.size(0), " (the logits' rows), got shape ", target.sizes());
  TORCH_CHECK(target.device() == logits.device(), op, ": target is on ", target.device(), " but logits are on ",
              logits.device());
}

void check_fused_cross_entropy_backward_inputs(const at::Tensor& grad_nll, const at::Tensor& grad_smooth,
                                               const at::Tensor& logits, const at::Tensor& target,
                                               const at::Tensor& lse) {
  const char* op = "fused_cross_entropy_backward";
  check_fused_cross_entropy_forward_inputs(logits, target);
  for (const at::Tensor* v : {&grad_nll, &grad_smooth, &lse}) {
    TORCH_CHECK(v->dim() == 1 && v->size(0) == logits.size(0), op,
                ": grad_nll, grad_smooth and lse must be [N] with N = ", logits.size(0), ", got shape ", v->sizes());
    TORCH_CHECK(v->device() == logits.device(), op, ": all inputs must be on ", logits.device(), ", got ",
                v->device());
    TORCH_CHECK(at::isFloatingType(v->scalar_type()), op,
                ": grad_nll, grad_smooth and lse must be floating point, got ", v->scalar_type());
  }
  const auto acc_dtype = at::toOpMathType(logits.scalar_type());
  TORCH_CHECK(lse.scalar_type() == acc_dtype, op, ": lse must be ", acc_dtype, " (as the forward returns it), got ",
              lse.scalar_type());
}

namespace {

// Vocabulary chunk: 2048 fp32 (8 KiB) stays in L1 while it is read twice (max, then exp-sum).
constexpr int64_t kChunk = 2048;

#if defined(__GNUC__) || defined(__clang__)
#define FLC_INLINE inline __attribute__((always_inline))
#else
#define FLC_INLINE inline
#endif

// OpenMP SIMD: lets the compiler vectorize the float reductions below (reordering a float sum is
// not allowed otherwise without -ffast-math). setup.py compiles with -fopenmp; elsewhere the pragma
// is ignored and the loops are simply scalar.
#if defined(_OPENMP)
#define FLC_PRAGMA(...) _Pragma(#__VA_ARGS__)
#define FLC_SIMD(...) FLC_PRAGMA(omp simd __VA_ARGS__)
#else
#define FLC_SIMD(...)
#endif

FLC_INLINE uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}
FLC_INLINE float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// exp(x) in fp32 for x <= 0 (the kernels only take exp of "logit - max" or "logit - lse"), written
// with plain float and integer arithmetic so that it vectorizes: std::exp is a scalar libm call and
// would dominate the run time. Cephes' expf: x = n*ln2 + r with |r| <= ln2/2 (Cody-Waite split of
// ln2), a polynomial for exp(r), and 2^n put into the exponent bits. Relative error < 1e-7 on
// [-87.3, 0]; correct up to x = 88 too (a rounding error can make "logit - lse" slightly positive).
// Below -87.3 (exp < 2^-126, fp32's normal range) it returns 0; exp(-inf) = 0 and NaN stays NaN.
// The underflow case is a bit mask rather than `x < c ? c : x`: with a float select GCC keeps a
// branch (the arithmetic after it "could trap") and gives up vectorizing the loop.
FLC_INLINE float exp_nonpositive(float x) {
  const uint32_t underflow = 0u - static_cast<uint32_t>(x < -87.3f);  // all ones or zero; false for NaN
  x = float_of((bits_of(x) & ~underflow) | (bits_of(-87.3f) & underflow));
  // n = round(x * log2(e)) by adding and subtracting 1.5 * 2^23 (no SSE4.1 rounding instruction needed);
  // t's low mantissa bits then hold n as an integer.
  const float shifter = 12582912.0f;
  const float t = x * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  float r = x - n * 0.693359375f;  // ln2 = 0.693359375 - 2.12194440e-4; the first product is exact
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n: (n + 127) << 23 is the exponent field of a normal float for n in [-126, 127].
  const float scale = float_of((bits_of(t) - UINT32_C(0x4B400000) + 127u) << 23);
  return float_of(bits_of(p * scale) & ~underflow);
}

FLC_INLINE float exp_acc(float x) {
  return exp_nonpositive(x);
}
FLC_INLINE double exp_acc(double x) {
  return std::exp(x);  // fp64 is for gradcheck, not for speed
}

// 16-bit float <-> fp32, bit-exact with c10's conversions, written with integer masks instead of
// selects between float values for the reason given above exp_nonpositive (c10's versions keep the
// loops scalar). A mask is all ones where `c` holds.
FLC_INLINE uint32_t select_bits(bool c, uint32_t if_true, uint32_t if_false) {
  const uint32_t mask = 0u - static_cast<uint32_t>(c);
  return (if_true & mask) | (if_false & ~mask);
}

FLC_INLINE float to_float(at::BFloat16 v) {
  return float_of(static_cast<uint32_t>(v.x) << 16);
}

// Round to nearest even; a NaN stays a (quiet) NaN.
FLC_INLINE at::BFloat16 bf16_from_float(float f) {
  const uint32_t u = bits_of(f);
  const uint32_t rounded = (u + UINT32_C(0x7FFF) + ((u >> 16) & 1)) >> 16;
  const uint32_t bits = select_bits((u & UINT32_C(0x7FFFFFFF)) > UINT32_C(0x7F800000), UINT32_C(0x7FC0), rounded);
  return at::BFloat16(static_cast<uint16_t>(bits), at::BFloat16::from_bits());
}

// IEEE half -> fp32 (the FP16 library's algorithm, as in c10::detail::fp16_ieee_to_fp32_value):
// normal numbers by re-biasing the exponent, subnormals through a magic-number subtraction.
FLC_INLINE float to_float(at::Half v) {
  const uint32_t w = static_cast<uint32_t>(v.x) << 16;
  const uint32_t sign = w & UINT32_C(0x80000000);
  const uint32_t two_w = w + w;
  const float normalized = float_of((two_w >> 4) + (UINT32_C(0xE0) << 23)) * float_of(UINT32_C(15) << 23);
  const float subnormal = float_of((two_w >> 17) | (UINT32_C(126) << 23)) - 0.5f;
  return float_of(sign | select_bits(two_w < (UINT32_C(1) << 27), bits_of(subnormal), bits_of(normalized)));
}

// fp32 -> IEEE half, round to nearest even (c10::detail::fp16_ieee_from_fp32_value's algorithm).
FLC_INLINE at::Half half_from_float(float f) {
  float base = (std::fabs(f) * float_of(UINT32_C(239) << 23)) * float_of(UINT32_C(17) << 23);
  const uint32_t w = bits_of(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & UINT32_C(0x80000000);
  uint32_t bias = shl1_w & UINT32_C(0xFF000000);
  bias = select_bits(bias < UINT32_C(0x71000000), UINT32_C(0x71000000), bias);
  base = float_of((bias >> 1) + UINT32_C(0x07800000)) + base;
  const uint32_t b = bits_of(base);
  const uint32_t nonsign = ((b >> 13) & UINT32_C(0x00007C00)) + (b & UINT32_C(0x00000FFF));
  const uint32_t bits = (sign >> 16) | select_bits(shl1_w > UINT32_C(0xFF000000), UINT32_C(0x7E00), nonsign);
  return at::Half(static_cast<uint16_t>(bits), at::Half::from_bits());
}

template <typename scalar_t>
FLC_INLINE scalar_t from_float(float f);
template <>
FLC_INLINE at::BFloat16 from_float<at::BFloat16>(float f) {
  return bf16_from_float(f);
}
template <>
FLC_INLINE at::Half from_float<at::Half>(float f) {
  return half_from_float(f);
}

// The chunk [src, src + n) as acc_t: the input itself when it is already acc_t, else a converted
// copy in `buffer` (bf16/fp16 -> fp32), so that the two passes over a chunk read fp32 from L1.
template <typename scalar_t, typename acc_t>
FLC_INLINE const acc_t* chunk_as_acc(const scalar_t* src, int64_t n, acc_t* buffer) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    return src;
  } else {
    FLC_SIMD()
    for (int64_t i = 0; i < n; ++i) {
      buffer[i] = to_float(src[i]);
    }
    return buffer;
  }
}

template <typename scalar_t>
FLC_INLINE void store_chunk(const float* src, int64_t n, scalar_t* dst) {
  FLC_SIMD()
  for (int64_t i = 0; i < n; ++i) {
    dst[i] = from_float<scalar_t>(src[i]);
  }
}

// One row's log-sum-exp and sum of logits, chunk by chunk (online softmax normalizer: when a chunk
// raises the running max m, the running sum is rescaled by exp(old_m - m)).
template <typename scalar_t, typename acc_t>
FLC_INLINE void row_lse_and_sum(const scalar_t* row, int64_t V, acc_t* buffer, acc_t& lse, acc_t& sum) {
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  acc_t m = kNegInf;  // running max
  acc_t s = 0;        // running sum of exp(x - m)
  acc_t total = 0;    // running sum of x
  for (int64_t start = 0; start < V; start += kChunk) {
    const int64_t n = std::min(kChunk, V - start);
    const acc_t* x = chunk_as_acc<scalar_t, acc_t>(row + start, n, buffer);
    acc_t chunk_max = kNegInf;
    acc_t chunk_sum = 0;
    FLC_SIMD(reduction(max : chunk_max) reduction(+ : chunk_sum))
    for (int64_t i = 0; i < n; ++i) {
      chunk_max = x[i] > chunk_max ? x[i] : chunk_max;
      chunk_sum += x[i];
    }
    total += chunk_sum;
    if (chunk_max > m) {
      s *= std::exp(m - chunk_max);  // 0 while m is still -inf
      m = chunk_max;
    }
    if (m == kNegInf) {
      continue;  // everything so far is -inf: exp(x - m) would be exp(nan); the terms are all 0
    }
    acc_t chunk_exp = 0;
    FLC_SIMD(reduction(+ : chunk_exp))
    for (int64_t i = 0; i < n; ++i) {
      chunk_exp += exp_acc(x[i] - m);
    }
    s += chunk_exp;
    // A NaN logit: the comparisons above skip it, but it reaches the sums, so lse and sum are NaN
    // like log_softmax's output.
  }
  lse = m + std::log(s);  // all -inf: -inf + log(0) = -inf, and nll = -inf - (-inf) = NaN, as torch
  sum = total;
}

template <typename scalar_t, typename acc_t>
FLC_INLINE void forward_rows_impl(const scalar_t* logits, const int64_t* target, int64_t ignore_index,
                                  int64_t V, int64_t begin, int64_t end, acc_t* nll, acc_t* smooth,
                                  acc_t* lse_out) {
  alignas(64) acc_t buffer[std::is_same_v<scalar_t, acc_t> ? 1 : kChunk];
  for (int64_t r = begin; r < end; ++r) {
    const scalar_t* row = logits + r * V;
    const int64_t t = target[r];
    if (t == ignore_index) {  // padding: nothing to compute (the backward writes zeros without lse)
      nll[r] = 0;
      smooth[r] = 0;
      lse_out[r] = 0;
      continue;
    }
    TORCH_CHECK(t >= 0 && t < V, "fused_cross_entropy: target ", t, " at row ", r, " is out of bounds for ", V,
                " classes (and is not ignore_index=", ignore_index, ")");
    acc_t lse, sum;
    row_lse_and_sum<scalar_t, acc_t>(row, V, buffer, lse, sum);
    lse_out[r] = lse;
    nll[r] = lse - static_cast<acc_t>(row[t]);
    smooth[r] = static_cast<acc_t>(V) * lse - sum;
  }
}

template <typename scalar_t, typename acc_t>
FLC_INLINE void backward_rows_impl(const acc_t* grad_nll, const acc_t* grad_smooth, const scalar_t* logits,
                                   const int64_t* target, const acc_t* lse, int64_t ignore_index, int64_t V,
                                   int64_t begin, int64_t end, scalar_t* grad) {
  constexpr bool kSameType = std::is_same_v<scalar_t, acc_t>;
  alignas(64) acc_t in_buffer[kSameType ? 1 : kChunk];
  alignas(64) acc_t out_buffer[kSameType ? 1 : kChunk];
  for (int64_t r = begin; r < end; ++r) {
    const scalar_t* x = logits + r * V;
    scalar_t* g = grad + r * V;
    const int64_t t = target[r];
    if (t == ignore_index) {
      std::fill(g, g + V, scalar_t(0));
      continue;
    }
    TORCH_CHECK(t >= 0 && t < V, "fused_cross_entropy: target ", t, " at row ", r, " is out of bounds for ", V,
                " classes (and is not ignore_index=", ignore_index, ")");
    // g_nll * (p - onehot) + g_smooth * (V p - 1) = p * (g_nll + V g_smooth) - g_smooth - g_nll * onehot
    const acc_t row_lse = lse[r];
    const acc_t a = grad_nll[r] + static_cast<acc_t>(V) * grad_smooth[r];
    const acc_t b = grad_smooth[r];
    for (int64_t start = 0; start < V; start += kChunk) {
      const int64_t n = std::min(kChunk, V - start);
      const acc_t* xs = chunk_as_acc<scalar_t, acc_t>(x + start, n, in_buffer);
      acc_t* out = kSameType ? reinterpret_cast<acc_t*>(g + start) : out_buffer;
      FLC_SIMD()
      for (int64_t i = 0; i < n; ++i) {
        out[i] = a * exp_acc(xs[i] - row_lse) - b;
      }
      if constexpr (!kSameType) {
        store_chunk(out_buffer, n, g + start);
      }
    }
    // The target entry again, with its -g_nll, so that it is rounded to scalar_t once.
    g[t] = static_cast<scalar_t>(a * exp_acc(static_cast<acc_t>(x[t]) - row_lse) - b - grad_nll[r]);
  }
}

// The row loops compiled twice on x86-64: for the baseline ISA (SSE2, what the extension is built
// for) and for AVX2+FMA, chosen at run time. The always-inline helpers above are compiled into each
// version, so the vectorized exp runs 8 floats wide where the CPU allows it.
template <typename scalar_t, typename acc_t>
void forward_rows_baseline(const scalar_t* logits, const int64_t* target, int64_t ignore_index, int64_t V,
                           int64_t begin, int64_t end, acc_t* nll, acc_t* smooth, acc_t* lse) {
  forward_rows_impl<scalar_t, acc_t>(logits, target, ignore_index, V, begin, end, nll, smooth, lse);
}
template <typename scalar_t, typename acc_t>
void backward_rows_baseline(const acc_t* grad_nll, const acc_t* grad_smooth, const scalar_t* logits,
                            const int64_t* target, const acc_t* lse, int64_t ignore_index, int64_t V,
                            int64_t begin, int64_t end, scalar_t* grad) {
  backward_rows_impl<scalar_t, acc_t>(grad_nll, grad_smooth, logits, target, lse, ignore_index, V, begin, end, grad);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FLC_HAVE_AVX2_VERSION 1
template <typename scalar_t, typename acc_t>
__attribute__((target("avx2,fma"))) void forward_rows_avx2(const scalar_t* logits, const int64_t* target,
                                                           int64_t ignore_index, int64_t V, int64_t begin,
                                                           int64_t end, acc_t* nll, acc_t* smooth, acc_t* lse) {
  forward_rows_impl<scalar_t, acc_t>(logits, target, ignore_index, V, begin, end, nll, smooth, lse);
}
template <typename scalar_t, typename acc_t>
__attribute__((target("avx2,fma"))) void backward_rows_avx2(const acc_t* grad_nll, const acc_t* grad_smooth,
                                                            const scalar_t* logits, const int64_t* target,
                                                            const acc_t* lse, int64_t ignore_index, int64_t V,
                                                            int64_t begin, int64_t end, scalar_t* grad) {
  backward_rows_impl<scalar_t, acc_t>(grad_nll, grad_smooth, logits, target, lse, ignore_index, V, begin, end, grad);
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
#else
#define FLC_HAVE_AVX2_VERSION 0
#endif

// Rows per parallel task: enough that a task has some 32K logits to work on.
int64_t grain_rows(int64_t V) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(V, 1));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cpu(const at::Tensor& logits_in, const at::Tensor& target_in,
                                                           int64_t ignore_index) {
  check_fused_cross_entropy_forward_inputs(logits_in, target_in);
  const at::Tensor logits = logits_in.contiguous();
  const at::Tensor target = target_in.contiguous();
  const int64_t N = logits.size(0), V = logits.size(1);
  const auto acc_dtype = at::toOpMathType(logits.scalar_type());
  at::Tensor nll = at::empty({N}, logits.options().dtype(acc_dtype));
  at::Tensor smooth = at::empty({N}, logits.options().dtype(acc_dtype));
  at::Tensor lse = at::empty({N}, logits.options().dtype(acc_dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "fused_cross_entropy_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* x = logits.const_data_ptr<scalar_t>();
    const int64_t* t = target.const_data_ptr<int64_t>();
    acc_t* nll_p = nll.mutable_data_ptr<acc_t>();
    acc_t* smooth_p = smooth.mutable_data_ptr<acc_t>();
    acc_t* lse_p = lse.mutable_data_ptr<acc_t>();
    at::parallel_for(0, N, grain_rows(V), [&](int64_t begin, int64_t end) {
#if FLC_HAVE_AVX2_VERSION
      if (cpu_has_avx2()) {
        forward_rows_avx2<scalar_t, acc_t>(x, t, ignore_index, V, begin, end, nll_p, smooth_p, lse_p);
        return;
      }
#endif
      forward_rows_baseline<scalar_t, acc_t>(x, t, ignore_index, V, begin, end, nll_p, smooth_p, lse_p);
    });
  });
  return {nll, smooth, lse};
}

at::Tensor backward_cpu(const at::Tensor& grad_nll_in, const at::Tensor& grad_smooth_in, const at::Tensor& logits_in,
                        const at::Tensor& target_in, const at::Tensor& lse_in, int64_t ignore_index) {
  check_fused_cross_entropy_backward_inputs(grad_nll_in, grad_smooth_in, logits_in, target_in, lse_in);
  const int64_t N = logits_in.size(0), V = logits_in.size(1);
  const auto acc_dtype = at::toOpMathType(logits_in.scalar_type());
  const at::Tensor logits = logits_in.contiguous();
  const at::Tensor target = target_in.contiguous();
  const at::Tensor lse = lse_in.contiguous();
  // The incoming gradients may be expanded scalars (from a .sum()) or another float dtype.
  const at::Tensor grad_nll = grad_nll_in.to(acc_dtype).contiguous();
  const at::Tensor grad_smooth = grad_smooth_in.to(acc_dtype).contiguous();
  at::Tensor grad = at::empty_like(logits, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "fused_cross_entropy_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t* gn = grad_nll.const_data_ptr<acc_t>();
    const acc_t* gs = grad_smooth.const_data_ptr<acc_t>();
    const scalar_t* x = logits.const_data_ptr<scalar_t>();
    const int64_t* t = target.const_data_ptr<int64_t>();
    const acc_t* l = lse.const_data_ptr<acc_t>();
    scalar_t* g = grad.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, N, grain_rows(V), [&](int64_t begin, int64_t end) {
#if FLC_HAVE_AVX2_VERSION
      if (cpu_has_avx2()) {
        backward_rows_avx2<scalar_t, acc_t>(gn, gs, x, t, l, ignore_index, V, begin, end, g);
        return;
      }
#endif
      backward_rows_baseline<scalar_t, acc_t>(gn, gs, x, t, l, ignore_index, V, begin, end, g);
    });
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fairseq_lite, m) {
  m.def("fused_cross_entropy_forward(Tensor logits, Tensor target, int ignore_index) -> (Tensor, Tensor, Tensor)");
  m.def(
      "fused_cross_entropy_backward(Tensor grad_nll, Tensor grad_smooth, Tensor logits, Tensor target, Tensor lse, "
      "int ignore_index) -> Tensor");
}

TORCH_LIBRARY_IMPL(fairseq_lite, CPU, m) {
  m.impl("fused_cross_entropy_forward", &forward_cpu);
  m.impl("fused_cross_entropy_backward", &backward_cpu);
}

}  // namespace fairseq_lite
