// fairseq_lite._C: the compiled kernels.
//
// Every kernel registers itself as a torch operator in its own source file
// (TORCH_LIBRARY_FRAGMENT(fairseq_lite, m) for the schema, TORCH_LIBRARY_IMPL for its CPU and CUDA
// implementations), so Python calls them as torch.ops.fairseq_lite.<name> and torch dispatches on the
// device. This file only makes the shared library importable as a Python module: importing it runs
// those registrations.
#include <torch/extension.h>

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fairseq-lite compiled kernels; call them through torch.ops.fairseq_lite";
#ifdef WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
