// n-gram repeat blocking for beam search (--no-repeat-ngram-size), CPU kernel and operator schema.
//
//   ngram_repeat_block_(Tensor tokens, Tensor(a!) lprobs, int n) -> ()
//
// tokens [N, L] (int64) holds each hypothesis so far, lprobs [N, V] the next-token log-probabilities
// of the same N rows. A token t is banned for row r when the n-gram (last n-1 tokens of r, t) already
// occurs in r, i.e. when some window tokens[r, k:k+n-1] equals the last n-1 tokens and
// tokens[r, k+n-1] == t. Banned entries are set to -inf in place. With L < n nothing can repeat yet.
//
// The per-row work is tiny (L-n+1 windows of n-1 comparisons), so the kernel touches only the banned
// entries of lprobs instead of building an N x V mask as the PyTorch reference
// (fairseq_lite.generation.search.NGramRepeatBlock) does. The CUDA kernel is in
// ngram_repeat_block_cuda.cu and shares check_ngram_repeat_block_inputs from here.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

namespace fairseq_lite {

// Shape, dtype and device checks shared by the CPU and CUDA kernels (declared again in the .cu file).
void check_ngram_repeat_block_inputs(const at::Tensor& tokens, const at::Tensor& lprobs, int64_t n) {
  TORCH_CHECK(n >= 1, "ngram_repeat_block_: the n-gram size must be >= 1, got ", n);
  TORCH_CHECK(tokens.dim() == 2, "ngram_repeat_block_: tokens must be 2-D [bsz*beam, step+1], got shape ",
              tokens.sizes());
  TORCH_CHECK(lprobs.dim() == 2, "ngram_repeat_block_: lprobs must be 2-D [bsz*beam, vocab], got shape ",
              lprobs.sizes());
  TORCH_CHECK(tokens.size(0) == lprobs.size(0), "ngram_repeat_block_: tokens has ", tokens.size(0),
              " rows but lprobs has ", lprobs.size(0));
  TORCH_CHECK(tokens.scalar_type() == at::kLong, "ngram_repeat_block_: tokens must be int64, got ",
              tokens.scalar_type());
  TORCH_CHECK(at::isFloatingType(lprobs.scalar_type()),
              "ngram_repeat_block_: lprobs must be a floating-point tensor, got ", lprobs.scalar_type());
  TORCH_CHECK(tokens.device() == lprobs.device(), "ngram_repeat_block_: tokens (on ", tokens.device(),
              ") and lprobs (on ", lprobs.device(), ") must be on the same device");
}

namespace {

void ngram_repeat_block_cpu(const at::Tensor& tokens, const at::Tensor& lprobs, int64_t n) {
  check_ngram_repeat_block_inputs(tokens, lprobs, n);
  TORCH_CHECK(tokens.device().is_cpu(), "ngram_repeat_block_: the CPU kernel got tensors on ", tokens.device());
  const int64_t rows = tokens.size(0);
  const int64_t len = tokens.size(1);
  const int64_t vocab = lprobs.size(1);
  if (rows == 0 || len < n) return;

  // Accessors follow strides, so tokens[:, :step+1] (a strided view of the generator's buffer) and
  // a non-contiguous lprobs are used as they are, without copies.
  const auto tok = tokens.accessor<int64_t, 2>();
  const int64_t context = len - (n - 1);  // the last n-1 tokens start here
  const int64_t windows = len - n + 1;    // n-grams so far
  // Rows are independent; below a few thousand windows in all, threads cost more than they save.
  const int64_t grain = std::max<int64_t>(1, 2048 / std::max<int64_t>(1, windows * n));

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, lprobs.scalar_type(), "ngram_repeat_block_cpu", [&] {
    auto lp = lprobs.accessor<scalar_t, 2>();
    const scalar_t neg_inf = -std::numeric_limits<scalar_t>::infinity();
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const auto row = tok[r];
        for (int64_t k = 0; k < windows; ++k) {
          bool repeats = true;
          for (int64_t j = 0; j < n - 1; ++j) {
            if (row[k + j] != row[context + j]) {
              repeats = false;
              break;
            }
          }
          if (!repeats) continue;
          const int64_t banned = row[k + n - 1];
          TORCH_CHECK(banned >= 0 && banned < vocab, "ngram_repeat_block_: token id ", banned, " in row ", r,
                      " is outside the vocabulary [0, ", vocab, ")");
          lp[r][banned] = neg_inf;
        }
      }
    });
  });
}

}  // namespace
}  // namespace fairseq_lite

TORCH_LIBRARY_FRAGMENT(fairseq_lite, m) {
  m.def("ngram_repeat_block_(Tensor tokens, Tensor(a!) lprobs, int n) -> ()");
}

TORCH_LIBRARY_IMPL(fairseq_lite, CPU, m) {
  m.impl("ngram_repeat_block_", &fairseq_lite::ngram_repeat_block_cpu);
}
