// Fused softmax cross-entropy: operator schemas and the CPU kernels.
//
//   fused_cross_entropy_forward(logits[N, V], target[N], ignore_index) -> (nll[N], smooth[N], lse[N])
//     nll    = lse - logits[target]        (= -log p[target])
//     smooth = V * lse - sum_v logits[v]   (= sum_v -log p[v], fairseq's smoothing term)
//     lse    = log sum_v exp(logits[v])    (saved by the caller for the backward)
//   fused_cross_entropy_backward(grad_nll[N], grad_smooth[N], logits, target, lse, ignore_index)
//     -> grad_logits[N, V] = grad_nll * (p - onehot(target)) + grad_smooth * (V * p - 1)
//
// Rows whose target is ignore_index give nll = smooth = 0 and a zero gradient (their lse is still
// computed). The point of the kernel is what it does not do: it never materializes the [N, V]
// log-probabilities (log_softmax + nll_loss keeps an fp32 copy for the backward, plus an fp32 copy of
// bf16/fp16 logits and two more [N, V] fp32 buffers in the backward). Per row, the forward reads the
// logits once from memory in L1-sized chunks, keeping a running max and sum of exp in fp32 (online
// log-sum-exp); the backward reads them once more and writes the gradient in the logits' dtype.
// Accumulation is in at::opmath_type (fp32 for fp32/bf16/fp16, fp64 for fp64, which gradcheck uses).
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

// exp(x) in fp32 for x <= 0 (the kernels only take exp of "logit - max" or "logit - lse"), written
// with plain float/int arithmetic so that it vectorizes: std::exp is a scalar libm call in every
// loop here, and it would dominate the run time. Cephes' expf: x = n*ln2 + r with |r| <= ln2/2
// (Cody-Waite split of ln2), a degree-7 polynomial for exp(r), then scale by 2^n through the
// exponent bits. Relative error about 2e-7 (checked against std::exp in the tests via the loss).
// Arguments below -87.3 (exp < 2^-126, the fp32 normal range) return 0 or a tiny value; -inf gives
// 0, NaN stays NaN.
FLC_INLINE float exp_nonpositive(float x) {
  x = x < -87.3f ? -87.3f : x;  // keeps 2^n normal; written so that NaN passes through
  // Round x*log2(e) to the nearest integer by adding and subtracting 1.5 * 2^23 (no SSE4.1 needed).
  const float shifter = 12582912.0f;
  const float t = x * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  float r = x - n * 0.693359375f;  // ln2 = 0.693359375 - 2.12194440e-4, exact in the first product
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n: n is an integer in [-126, 0] here, so (n + 127) << 23 is a normal float's exponent field.
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

FLC_INLINE float exp_acc(float x) {
  return exp_nonpositive(x);
}
FLC_INLINE double exp_acc(double x) {
  return std::exp(x);  // fp64 is for gradcheck, not for speed
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
      buffer[i] = static_cast<acc_t>(src[i]);
    }
    return buffer;
  }
}

// fp32 -> bf16 with round-to-nearest-even, NaN kept a (quiet) NaN: c10::BFloat16(float) computes the
// same thing but its NaN test is a branch, which keeps the loop from vectorizing.
FLC_INLINE uint16_t bf16_bits_from_float(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  const uint32_t rounded = (u + UINT32_C(0x7FFF) + ((u >> 16) & 1)) >> 16;
  return (u & UINT32_C(0x7FFFFFFF)) > UINT32_C(0x7F800000) ? UINT16_C(0x7FC0) : static_cast<uint16_t>(rounded);
}

FLC_INLINE void store_chunk(const float* src, int64_t n, at::BFloat16* dst) {
  uint16_t* bits = reinterpret_cast<uint16_t*>(dst);  // BFloat16 is its 16 bits (c10 relies on it too)
  FLC_SIMD()
  for (int64_t i = 0; i < n; ++i) {
    bits[i] = bf16_bits_from_float(src[i]);
  }
}

FLC_INLINE void store_chunk(const float* src, int64_t n, at::Half* dst) {
  for (int64_t i = 0; i < n; ++i) {
    dst[i] = static_cast<at::Half>(src[i]);
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
    acc_t lse, sum;
    row_lse_and_sum<scalar_t, acc_t>(row, V, buffer, lse, sum);
    lse_out[r] = lse;
    const int64_t t = target[r];
    if (t == ignore_index) {
      nll[r] = 0;
      smooth[r] = 0;
      continue;
    }
    TORCH_CHECK(t >= 0 && t < V, "fused_cross_entropy: target ", t, " at row ", r, " is out of bounds for ", V,
                " classes (and is not ignore_index=", ignore_index, ")");
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

void check_inputs(const at::Tensor& logits, const at::Tensor& target, const char* op) {
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

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cpu(const at::Tensor& logits_in, const at::Tensor& target_in,
                                                           int64_t ignore_index) {
  check_inputs(logits_in, target_in, "fused_cross_entropy_forward");
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
  const char* op = "fused_cross_entropy_backward";
  check_inputs(logits_in, target_in, op);
  const int64_t N = logits_in.size(0), V = logits_in.size(1);
  const auto acc_dtype = at::toOpMathType(logits_in.scalar_type());
  for (const at::Tensor* v : {&grad_nll_in, &grad_smooth_in, &lse_in}) {
    TORCH_CHECK(v->dim() == 1 && v->size(0) == N, op, ": grad_nll, grad_smooth and lse must be [N] with N = ", N,
                ", got shape ", v->sizes());
    TORCH_CHECK(v->device() == logits_in.device(), op, ": all inputs must be on ", logits_in.device(), ", got ",
                v->device());
  }
  TORCH_CHECK(lse_in.scalar_type() == acc_dtype, op, ": lse must be ", acc_dtype, " (from the forward), got ",
              lse_in.scalar_type());
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
