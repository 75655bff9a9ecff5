// n-gram repeat blocking, CUDA kernel (the schema and the CPU kernel are in ngram_repeat_block.cpp).
//
// One thread block per hypothesis row; its threads take the row's n-gram windows k = 0 .. L-n in a
// block-stride loop. A window whose first n-1 tokens equal the row's last n-1 tokens bans its last
// token: that thread writes -inf to lprobs[row, token]. Several windows may ban the same token; they
// all write the same value, so the unsynchronized writes are harmless.
//
// Each window reads n-1 tokens and the context another n-1, so the row is staged in shared memory
// first when it fits (it does for any realistic length: 6144 tokens in 48 KiB); longer rows are read
// from global memory directly.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

namespace fairseq_lite {

void check_ngram_repeat_block_inputs(const at::Tensor& tokens, const at::Tensor& lprobs, int64_t n);

namespace {

constexpr int64_t kMaxSharedBytes = 48 * 1024;  // the default dynamic shared-memory limit per block

template <typename scalar_t>
__global__ void ngram_repeat_block_kernel(const int64_t* __restrict__ tokens, int64_t tok_row_stride,
                                          int64_t tok_col_stride, scalar_t* __restrict__ lprobs,
                                          int64_t lp_row_stride, int64_t lp_col_stride, int64_t len, int64_t n,
                                          int64_t vocab, bool stage_in_shared, scalar_t neg_inf) {
  extern __shared__ int64_t staged[];
  const int64_t row = blockIdx.x;
  const int64_t* seq = tokens + row * tok_row_stride;
  int64_t stride = tok_col_stride;
  if (stage_in_shared) {  // the same for every thread of the block, so __syncthreads is reached by all
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) staged[i] = seq[i * tok_col_stride];
    __syncthreads();
    seq = staged;
    stride = 1;
  }
  const int64_t context = len - (n - 1);
  const int64_t windows = len - n + 1;
  for (int64_t k = threadIdx.x; k < windows; k += blockDim.x) {
    bool repeats = true;
    for (int64_t j = 0; j < n - 1; ++j) {
      if (seq[(k + j) * stride] != seq[(context + j) * stride]) {
        repeats = false;
        break;
      }
    }
    if (!repeats) continue;
    const int64_t banned = seq[(k + n - 1) * stride];
    // The CPU kernel raises on an id outside the vocabulary; a device-side assert would poison the
    // whole CUDA context, so here such an id is skipped instead.
    if (banned >= 0 && banned < vocab) lprobs[row * lp_row_stride + banned * lp_col_stride] = neg_inf;
  }
}

void ngram_repeat_block_cuda(const at::Tensor& tokens, const at::Tensor& lprobs, int64_t n) {
  check_ngram_repeat_block_inputs(tokens, lprobs, n);
  TORCH_CHECK(tokens.is_cuda(), "ngram_repeat_block_: the CUDA kernel got tensors on ", tokens.device());
  const int64_t rows = tokens.size(0);
  const int64_t len = tokens.size(1);
  if (rows == 0 || len < n) return;
  TORCH_CHECK(rows <= std::numeric_limits<int32_t>::max(), "ngram_repeat_block_: too many rows (", rows,
              ") for one grid");

  const c10::cuda::CUDAGuard guard(lprobs.device());
  const int64_t windows = len - n + 1;
  // one warp for the usual short prefixes, up to 256 threads for long ones
  const int threads = static_cast<int>(std::min<int64_t>(256, std::max<int64_t>(32, (windows + 31) / 32 * 32)));
  const bool stage_in_shared = len * static_cast<int64_t>(sizeof(int64_t)) <= kMaxSharedBytes;
  const size_t shared_bytes = stage_in_shared ? static_cast<size_t>(len) * sizeof(int64_t) : 0;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, lprobs.scalar_type(), "ngram_repeat_block_cuda", [&] {
    ngram_repeat_block_kernel<scalar_t><<<static_cast<unsigned int>(rows), threads, shared_bytes, stream>>>(
        tokens.data_ptr<int64_t>(), tokens.stride(0), tokens.stride(1), lprobs.data_ptr<scalar_t>(),
        lprobs.stride(0), lprobs.stride(1), len, n, lprobs.size(1), stage_in_shared,
        -std::numeric_limits<scalar_t>::infinity());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace
}  // namespace fairseq_lite

TORCH_LIBRARY_IMPL(fairseq_lite, CUDA, m) {
  m.impl("ngram_repeat_block_", &fairseq_lite::ngram_repeat_block_cuda);
}
