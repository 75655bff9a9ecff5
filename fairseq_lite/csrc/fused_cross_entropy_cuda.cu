// Fused softmax cross-entropy, CUDA kernels (the schemas, the input checks and the CPU kernels are in
// fused_cross_entropy.cpp, which also states what the two operators compute).
//
// One thread block per row of logits. Forward: each thread keeps an online (max, sum of exp) pair
// and a sum of logits over its share of the row, in fp32 (fp64 for fp64 logits); the pairs are
// merged across the warp with shuffles and across warps through shared memory, and thread 0 writes
// nll, smooth and lse. Backward: the block recomputes p = exp(x - lse) for its row and writes the
// gradient in the logits' dtype; nothing [N, V] is allocated besides that gradient.
//
// Rows are read with 16-byte vector loads: a row starts at an arbitrary element offset (V need not
// be a multiple of anything), so the elements before its first 16-byte boundary and after its last
// whole vector are handled one by one. The backward also stores 16 bytes at a time when the gradient
// row has the same alignment as the logits row (it does unless the logits are a view at an odd
// storage offset), else element by element.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <limits>

namespace fairseq_lite {

void check_fused_cross_entropy_forward_inputs(const at::Tensor& logits, const at::Tensor& target);
void check_fused_cross_entropy_backward_inputs(const at::Tensor& grad_nll, const at::Tensor& grad_smooth,
                                               const at::Tensor& logits, const at::Tensor& target,
                                               const at::Tensor& lse);

namespace {

constexpr int kWarp = 32;
constexpr int kMaxThreads = 512;
constexpr int kVecBytes = 16;

// Threads per row: enough to give each a few 16-byte vectors on large vocabularies, and no more
// than one warp for tiny ones.
int threads_for(int64_t V, int64_t element_size) {
  const int64_t vectors = (V * element_size + kVecBytes - 1) / kVecBytes;
  int threads = kWarp;
  while (threads < kMaxThreads && threads * 4 < vectors) {
    threads *= 2;
  }
  return threads;
}

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T val[N];
};

__device__ __forceinline__ float exp_acc(float x) {
  return expf(x);  // not __expf: its error grows with |x|, and the gradient of small p is wanted in fp32
}
__device__ __forceinline__ double exp_acc(double x) {
  return exp(x);
}
__device__ __forceinline__ float log_acc(float x) {
  return logf(x);
}
__device__ __forceinline__ double log_acc(double x) {
  return log(x);
}

// Elements of the row [x, x + V) before its first 16-byte boundary (x is element-aligned).
template <typename scalar_t>
__device__ __forceinline__ int64_t unaligned_head(const scalar_t* x, int64_t V) {
  constexpr int kVec = kVecBytes / sizeof(scalar_t);
  const int64_t misalign = static_cast<int64_t>((reinterpret_cast<uintptr_t>(x) / sizeof(scalar_t)) % kVec);
  const int64_t to_boundary = misalign == 0 ? 0 : static_cast<int64_t>(kVec) - misalign;
  return to_boundary < V ? to_boundary : V;
}

// f(i, x[i]) for every element of the row, split over the block's threads.
template <typename scalar_t, typename F>
__device__ __forceinline__ void for_each_in_row(const scalar_t* __restrict__ x, int64_t V, F&& f) {
  constexpr int kVec = kVecBytes / sizeof(scalar_t);
  const int64_t head = unaligned_head(x, V);
  for (int64_t i = threadIdx.x; i < head; i += blockDim.x) {
    f(i, x[i]);
  }
  const int64_t vectors = (V - head) / kVec;
  const Vec<scalar_t, kVec>* xv = reinterpret_cast<const Vec<scalar_t, kVec>*>(x + head);
  for (int64_t j = threadIdx.x; j < vectors; j += blockDim.x) {
    const Vec<scalar_t, kVec> v = xv[j];
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      f(head + j * kVec + k, v.val[k]);
    }
  }
  for (int64_t i = head + vectors * kVec + threadIdx.x; i < V; i += blockDim.x) {
    f(i, x[i]);
  }
}

// g[i] = f(i, x[i]) for every element of the row.
template <typename scalar_t, typename F>
__device__ __forceinline__ void map_row(const scalar_t* __restrict__ x, scalar_t* __restrict__ g, int64_t V, F&& f) {
  constexpr int kVec = kVecBytes / sizeof(scalar_t);
  const int64_t head = unaligned_head(x, V);
  if (head != unaligned_head(g, V)) {  // differently aligned: no vector stores (the same for the whole block)
    for_each_in_row(x, V, [&](int64_t i, scalar_t v) { g[i] = f(i, v); });
    return;
  }
  for (int64_t i = threadIdx.x; i < head; i += blockDim.x) {
    g[i] = f(i, x[i]);
  }
  const int64_t vectors = (V - head) / kVec;
  const Vec<scalar_t, kVec>* xv = reinterpret_cast<const Vec<scalar_t, kVec>*>(x + head);
  Vec<scalar_t, kVec>* gv = reinterpret_cast<Vec<scalar_t, kVec>*>(g + head);
  for (int64_t j = threadIdx.x; j < vectors; j += blockDim.x) {
    const Vec<scalar_t, kVec> v = xv[j];
    Vec<scalar_t, kVec> out;
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      out.val[k] = f(head + j * kVec + k, v.val[k]);
    }
    gv[j] = out;
  }
  for (int64_t i = head + vectors * kVec + threadIdx.x; i < V; i += blockDim.x) {
    g[i] = f(i, x[i]);
  }
}

// Online log-sum-exp state: max m and s = sum exp(x - m). m == -inf means "no finite term yet"
// (s == 0), so that exp(-inf - -inf) = NaN never enters s.
template <typename acc_t>
struct LseState {
  acc_t m;
  acc_t s;
};

template <typename acc_t>
__device__ __forceinline__ LseState<acc_t> lse_merge(LseState<acc_t> a, LseState<acc_t> b) {
  const acc_t neg_inf = -INFINITY;
  const acc_t m = a.m > b.m ? a.m : b.m;
  const acc_t sa = a.m == neg_inf ? acc_t(0) : a.s * exp_acc(a.m - m);
  const acc_t sb = b.m == neg_inf ? acc_t(0) : b.s * exp_acc(b.m - m);
  return {m, sa + sb};
}

// Block-wide merge of every thread's (m, s) and sum; the result is valid in thread 0.
template <typename acc_t>
__device__ __forceinline__ void block_reduce(LseState<acc_t>& state, acc_t& sum) {
  __shared__ acc_t shared_m[kMaxThreads / kWarp];
  __shared__ acc_t shared_s[kMaxThreads / kWarp];
  __shared__ acc_t shared_sum[kMaxThreads / kWarp];
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const LseState<acc_t> other{__shfl_xor_sync(0xffffffff, state.m, offset),
                                __shfl_xor_sync(0xffffffff, state.s, offset)};
    state = lse_merge(state, other);
    sum += __shfl_xor_sync(0xffffffff, sum, offset);
  }
  if (warps == 1) {
    return;
  }
  if (lane == 0) {
    shared_m[warp] = state.m;
    shared_s[warp] = state.s;
    shared_sum[warp] = sum;
  }
  __syncthreads();
  if (warp == 0) {
    state = lane < warps ? LseState<acc_t>{shared_m[lane], shared_s[lane]} : LseState<acc_t>{-INFINITY, 0};
    sum = lane < warps ? shared_sum[lane] : acc_t(0);
#pragma unroll
    for (int offset = kWarp / 2; offset > 0; offset /= 2) {
      const LseState<acc_t> other{__shfl_xor_sync(0xffffffff, state.m, offset),
                                  __shfl_xor_sync(0xffffffff, state.s, offset)};
      state = lse_merge(state, other);
      sum += __shfl_xor_sync(0xffffffff, sum, offset);
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void fused_cross_entropy_forward_kernel(const scalar_t* __restrict__ logits,
                                                   const int64_t* __restrict__ target, int64_t ignore_index,
                                                   int64_t V, acc_t* __restrict__ nll, acc_t* __restrict__ smooth,
                                                   acc_t* __restrict__ lse_out) {
  const int64_t row = blockIdx.x;
  const scalar_t* x = logits + row * V;
  const int64_t t = target[row];
  if (t == ignore_index) {  // padding (the whole block returns: no __syncthreads is left waiting)
    if (threadIdx.x == 0) {
      nll[row] = 0;
      smooth[row] = 0;
      lse_out[row] = 0;
    }
    return;
  }
  CUDA_KERNEL_ASSERT(t >= 0 && t < V && "fused_cross_entropy: target out of bounds (and not ignore_index)");
  LseState<acc_t> state{-INFINITY, 0};
  acc_t sum = 0;
  for_each_in_row(x, V, [&](int64_t, scalar_t raw) {
    const acc_t v = static_cast<acc_t>(raw);
    sum += v;
    if (v > state.m) {  // a new max: rescale what was summed so far (0 while m was -inf)
      state.s = (state.m == acc_t(-INFINITY) ? acc_t(0) : state.s * exp_acc(state.m - v)) + acc_t(1);
      state.m = v;
    } else if (state.m != acc_t(-INFINITY)) {  // also lets a NaN logit through into s (NaN in, NaN out)
      state.s += exp_acc(v - state.m);
    }
  });
  block_reduce(state, sum);
  if (threadIdx.x != 0) {
    return;
  }
  const acc_t lse = state.m + log_acc(state.s);  // all -inf: -inf + log(0) = -inf, nll = NaN as in torch
  lse_out[row] = lse;
  nll[row] = lse - static_cast<acc_t>(x[t]);
  smooth[row] = static_cast<acc_t>(V) * lse - sum;
}

template <typename scalar_t, typename acc_t>
__global__ void fused_cross_entropy_backward_kernel(const acc_t* __restrict__ grad_nll,
                                                    const acc_t* __restrict__ grad_smooth,
                                                    const scalar_t* __restrict__ logits,
                                                    const int64_t* __restrict__ target,
                                                    const acc_t* __restrict__ lse, int64_t ignore_index, int64_t V,
                                                    scalar_t* __restrict__ grad) {
  const int64_t row = blockIdx.x;
  const scalar_t* x = logits + row * V;
  scalar_t* g = grad + row * V;
  const int64_t t = target[row];
  if (t == ignore_index) {
    map_row(x, g, V, [](int64_t, scalar_t) { return static_cast<scalar_t>(0); });
    return;
  }
  CUDA_KERNEL_ASSERT(t >= 0 && t < V && "fused_cross_entropy: target out of bounds (and not ignore_index)");
  // g_nll * (p - onehot) + g_smooth * (V p - 1) = p * (g_nll + V g_smooth) - g_smooth - g_nll * onehot
  const acc_t gn = grad_nll[row];
  const acc_t b = grad_smooth[row];
  const acc_t a = gn + static_cast<acc_t>(V) * b;
  const acc_t row_lse = lse[row];
  map_row(x, g, V, [&](int64_t i, scalar_t raw) {
    const acc_t p = exp_acc(static_cast<acc_t>(raw) - row_lse);
    return static_cast<scalar_t>(a * p - b - (i == t ? gn : acc_t(0)));
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cuda(const at::Tensor& logits_in, const at::Tensor& target_in,
                                                            int64_t ignore_index) {
  check_fused_cross_entropy_forward_inputs(logits_in, target_in);
  const c10::cuda::CUDAGuard guard(logits_in.device());
  const at::Tensor logits = logits_in.contiguous();
  const at::Tensor target = target_in.contiguous();
  const int64_t N = logits.size(0), V = logits.size(1);
  TORCH_CHECK(N <= std::numeric_limits<int32_t>::max(), "fused_cross_entropy: at most 2^31 - 1 rows, got ", N);
  const auto acc_dtype = at::toOpMathType(logits.scalar_type());
  at::Tensor nll = at::empty({N}, logits.options().dtype(acc_dtype));
  at::Tensor smooth = at::empty({N}, logits.options().dtype(acc_dtype));
  at::Tensor lse = at::empty({N}, logits.options().dtype(acc_dtype));
  if (N == 0) {
    return {nll, smooth, lse};
  }
  const int threads = threads_for(V, logits.element_size());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "fused_cross_entropy_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    fused_cross_entropy_forward_kernel<scalar_t, acc_t><<<static_cast<unsigned int>(N), threads, 0, stream>>>(
        logits.const_data_ptr<scalar_t>(), target.const_data_ptr<int64_t>(), ignore_index, V,
        nll.mutable_data_ptr<acc_t>(), smooth.mutable_data_ptr<acc_t>(), lse.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {nll, smooth, lse};
}

at::Tensor backward_cuda(const at::Tensor& grad_nll_in, const at::Tensor& grad_smooth_in, const at::Tensor& logits_in,
                         const at::Tensor& target_in, const at::Tensor& lse_in, int64_t ignore_index) {
  check_fused_cross_entropy_backward_inputs(grad_nll_in, grad_smooth_in, logits_in, target_in, lse_in);
  const c10::cuda::CUDAGuard guard(logits_in.device());
  const at::Tensor logits = logits_in.contiguous();
  const at::Tensor target = target_in.contiguous();
  const at::Tensor lse = lse_in.contiguous();
  const int64_t N = logits.size(0), V = logits.size(1);
  TORCH_CHECK(N <= std::numeric_limits<int32_t>::max(), "fused_cross_entropy: at most 2^31 - 1 rows, got ", N);
  const auto acc_dtype = at::toOpMathType(logits.scalar_type());
  // The incoming gradients may be expanded scalars (from a .sum()) or another float dtype.
  const at::Tensor grad_nll = grad_nll_in.to(acc_dtype).contiguous();
  const at::Tensor grad_smooth = grad_smooth_in.to(acc_dtype).contiguous();
  at::Tensor grad = at::empty_like(logits, at::MemoryFormat::Contiguous);
  if (N == 0) {
    return grad;
  }
  const int threads = threads_for(V, logits.element_size());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "fused_cross_entropy_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    fused_cross_entropy_backward_kernel<scalar_t, acc_t><<<static_cast<unsigned int>(N), threads, 0, stream>>>(
        grad_nll.const_data_ptr<acc_t>(), grad_smooth.const_data_ptr<acc_t>(), logits.const_data_ptr<scalar_t>(),
        target.const_data_ptr<int64_t>(), lse.const_data_ptr<acc_t>(), ignore_index, V,
        grad.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(fairseq_lite, CUDA, m) {
  m.impl("fused_cross_entropy_forward", &forward_cuda);
  m.impl("fused_cross_entropy_backward", &backward_cuda);
}

}  // namespace fairseq_lite
