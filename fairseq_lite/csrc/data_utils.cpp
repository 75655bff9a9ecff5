// Batching and token-block slicing: the index builders that run once per epoch over the whole dataset.
//
// fairseq writes these in Cython (data_utils_fast.pyx, token_block_utils_fast.pyx). They are greedy
// scans whose every step depends on the previous one, so numpy can only vectorize special cases (the
// reference in fairseq_lite/data/ does that, and falls back to Python loops otherwise); a plain C++
// loop handles every case in one linear pass over int64 arrays.
//
// All three operators take and return CPU int64 tensors (numpy arrays on the Python side, shared
// without a copy). They return boundaries only: the Python wrappers turn them into the lists of index
// arrays / slice tables the datasets expect, so the semantics stay readable next to the reference.
//
//   batch_by_size(num_tokens, max_tokens, max_sentences, bsz_mult) -> batch end positions
//   batch_fixed_shapes(num_tokens, shapes[S, 2])                    -> batch end positions
//   token_block_slices(sizes, break_mode, block_size, sep_len)      -> (block starts, block lengths)
//
// Semantics are exactly those of the numpy references in fairseq_lite/data/data_utils.py and
// token_block_dataset.py (tests/test_compiled_data_utils.py compares the two).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace fairseq_lite {
namespace {

at::Tensor int64_contiguous(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu(), what, " must be a CPU tensor, got one on ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kLong, what, " must be int64, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 1, what, " must be 1-D, got shape ", t.sizes());
  return t.contiguous();
}

at::Tensor to_tensor(const std::vector<int64_t>& values) {
  at::Tensor out = at::empty({static_cast<int64_t>(values.size())}, at::TensorOptions().dtype(at::kLong));
  if (!values.empty()) {
    std::memcpy(out.data_ptr<int64_t>(), values.data(), values.size() * sizeof(int64_t));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// batch_by_size
// ---------------------------------------------------------------------------------------------

// Greedy batching with fairseq's batch_by_size_vec semantics: a batch grows while its padded size
// (items x longest item) stays within max_tokens and its item count within max_sentences (<= 0: no
// limit); a batch of more than bsz_mult items is then trimmed to a multiple of bsz_mult and the
// trimmed items start the next batch. Restarting at the trim point rescans fewer than bsz_mult items
// per batch, so the pass is O(n + batches * bsz_mult).
at::Tensor batch_by_size_cpu(const at::Tensor& num_tokens, int64_t max_tokens, int64_t max_sentences,
                             int64_t bsz_mult) {
  TORCH_CHECK(bsz_mult >= 1, "batch_by_size: required_batch_size_multiple must be >= 1, got ", bsz_mult);
  const at::Tensor ntok_t = int64_contiguous(num_tokens, "batch_by_size: num_tokens");
  const int64_t* ntok = ntok_t.data_ptr<int64_t>();
  const int64_t n = ntok_t.numel();

  std::vector<int64_t> ends;
  int64_t start = 0;
  while (start < n) {
    int64_t limit = n - start;
    if (max_sentences > 0) limit = std::min(limit, max_sentences);
    int64_t count = 0;
    int64_t longest = 0;
    while (count < limit) {
      const int64_t size = ntok[start + count];
      TORCH_CHECK(size >= 0, "batch_by_size: num_tokens must be non-negative, got ", size, " at position ",
                  start + count);
      const int64_t grown = std::max(longest, size);
      // (count + 1) * grown > max_tokens, written so the product cannot overflow int64
      if (max_tokens > 0 && grown > max_tokens / (count + 1)) break;
      longest = grown;
      ++count;
    }
    // Only a single item over max_tokens leaves the batch empty; without this the loop never ends.
    TORCH_CHECK(count > 0, "batch_by_size: the item at position ", start, " has ", ntok[start],
                " tokens, which exceeds max_tokens=", max_tokens);
    if (count > bsz_mult) count -= count % bsz_mult;
    start += count;
    ends.push_back(start);
  }
  return to_tensor(ends);
}

// Greedy batching where every batch must fit one of the (max batch size, max length) shapes. A batch
// of c items whose longest item has length l fits when some shape has bsz >= c and length >= l, i.e.
// when l <= allowed[c], the longest length any shape accepts for c items. An item no shape accepts
// even alone still gets a batch of its own, as in the reference.
at::Tensor batch_fixed_shapes_cpu(const at::Tensor& num_tokens, const at::Tensor& shapes) {
  const at::Tensor ntok_t = int64_contiguous(num_tokens, "batch_fixed_shapes: num_tokens");
  TORCH_CHECK(shapes.device().is_cpu() && shapes.scalar_type() == at::kLong,
              "batch_fixed_shapes: shapes must be a CPU int64 tensor, got ", shapes.scalar_type(), " on ",
              shapes.device());
  TORCH_CHECK(shapes.dim() == 2 && shapes.size(1) == 2,
              "batch_fixed_shapes: shapes must have shape [S, 2] (batch size, length), got ", shapes.sizes());
  const at::Tensor shapes_c = shapes.contiguous();
  const int64_t* shape = shapes_c.data_ptr<int64_t>();
  const int64_t num_shapes = shapes_c.size(0);

  const int64_t* ntok = ntok_t.data_ptr<int64_t>();
  const int64_t n = ntok_t.numel();
  int64_t largest_bsz = 0;
  for (int64_t s = 0; s < num_shapes; ++s) {
    TORCH_CHECK(shape[2 * s] >= 0 && shape[2 * s + 1] >= 0,
                "batch_fixed_shapes: shapes must be non-negative, got (", shape[2 * s], ", ", shape[2 * s + 1],
                ")");
    largest_bsz = std::max(largest_bsz, shape[2 * s]);
  }
  // No batch holds more than n items, so the table never needs more than n + 1 entries.
  const int64_t table_size = std::min(largest_bsz, n);
  std::vector<int64_t> allowed(table_size + 1, -1);  // allowed[0] unused
  for (int64_t s = 0; s < num_shapes; ++s) {
    const int64_t bsz = std::min(shape[2 * s], table_size);
    for (int64_t c = 1; c <= bsz; ++c) allowed[c] = std::max(allowed[c], shape[2 * s + 1]);
  }

  std::vector<int64_t> ends;
  int64_t start = 0;
  int64_t batch_len = 0;
  for (int64_t pos = 0; pos < n; ++pos) {
    const int64_t count = pos - start + 1;
    const int64_t grown = std::max(batch_len, ntok[pos]);
    if (count <= largest_bsz && grown <= allowed[count]) {
      batch_len = grown;
      continue;
    }
    if (pos > start) ends.push_back(pos);
    start = pos;
    batch_len = ntok[pos];
  }
  if (start < n) ends.push_back(n);
  return to_tensor(ends);
}

// ---------------------------------------------------------------------------------------------
// token blocks
// ---------------------------------------------------------------------------------------------

// Packs whole sentences greedily into blocks of at most block_size tokens: a block takes sentences
// while they fit, and always takes sentences until its first non-empty one (a sentence longer than
// block_size becomes a block of its own). In complete_doc mode (is_sep given) a block also never
// takes a separator sentence; a separator is skipped, and blocks of one token or less are dropped.
void pack_sentences(const int64_t* sizes, int64_t n, int64_t block_size, const int64_t* sep_len,
                    std::vector<int64_t>& starts, std::vector<int64_t>& lengths) {
  const bool docs = sep_len != nullptr;
  const int64_t min_kept = docs ? 2 : 1;
  int64_t offset = 0;  // token offset of sentence i
  int64_t i = 0;
  while (i < n) {
    if (docs && sizes[i] == *sep_len) {
      offset += sizes[i];
      ++i;
      continue;
    }
    int64_t taken = 0;
    int64_t j = i;
    while (j < n && !(docs && sizes[j] == *sep_len) && (taken == 0 || taken + sizes[j] <= block_size)) {
      taken += sizes[j];
      ++j;
    }
    if (taken >= min_kept) {
      starts.push_back(offset);
      lengths.push_back(taken);
    }
    offset += taken;
    i = j;
  }
}

std::tuple<at::Tensor, at::Tensor> token_block_slices_cpu(const at::Tensor& sizes_in, c10::string_view break_mode,
                                                          int64_t block_size, int64_t document_sep_len) {
  const at::Tensor sizes_t = int64_contiguous(sizes_in, "token_block_slices: sizes");
  const int64_t* sizes = sizes_t.data_ptr<int64_t>();
  const int64_t n = sizes_t.numel();
  int64_t total = 0;
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(sizes[i] >= 0, "token_block_slices: sentence sizes must be non-negative, got ", sizes[i],
                " at sentence ", i);
    total += sizes[i];
  }
  const std::string mode(break_mode.data(), break_mode.size());
  TORCH_CHECK(mode == "none" || mode == "complete" || mode == "complete_doc" || mode == "eos",
              "token_block_slices: unknown break mode '", mode, "' (allowed: none, complete, complete_doc, eos)");
  TORCH_CHECK(mode == "eos" || block_size >= 1, "token_block_slices: break mode '", mode,
              "' needs block_size >= 1, got ", block_size);

  if (mode == "eos") {  // one block per sentence
    at::Tensor starts = at::empty({n}, sizes_t.options());
    int64_t* out = starts.data_ptr<int64_t>();
    int64_t offset = 0;
    for (int64_t i = 0; i < n; ++i) {
      out[i] = offset;
      offset += sizes[i];
    }
    return {starts, sizes_t.clone()};
  }

  if (mode == "none") {  // the token stream cut every block_size tokens, ignoring sentences
    const int64_t num_blocks = total / block_size + (total % block_size != 0);
    at::Tensor starts = at::empty({num_blocks}, sizes_t.options());
    at::Tensor lengths = at::empty({num_blocks}, sizes_t.options());
    int64_t* s = starts.data_ptr<int64_t>();
    int64_t* l = lengths.data_ptr<int64_t>();
    for (int64_t b = 0; b < num_blocks; ++b) {
      s[b] = b * block_size;
      l[b] = std::min(block_size, total - s[b]);
    }
    return {starts, lengths};
  }

  std::vector<int64_t> starts, lengths;
  pack_sentences(sizes, n, block_size, mode == "complete_doc" ? &document_sep_len : nullptr, starts, lengths);
  return {to_tensor(starts), to_tensor(lengths)};
}

}  // namespace
}  // namespace fairseq_lite

TORCH_LIBRARY_FRAGMENT(fairseq_lite, m) {
  m.def("batch_by_size(Tensor num_tokens, int max_tokens, int max_sentences, int bsz_mult) -> Tensor");
  m.def("batch_fixed_shapes(Tensor num_tokens, Tensor shapes) -> Tensor");
  m.def("token_block_slices(Tensor sizes, str break_mode, int block_size, int document_sep_len)"
        " -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fairseq_lite, CPU, m) {
  m.impl("batch_by_size", &fairseq_lite::batch_by_size_cpu);
  m.impl("batch_fixed_shapes", &fairseq_lite::batch_fixed_shapes_cpu);
  m.impl("token_block_slices", &fairseq_lite::token_block_slices_cpu);
}
