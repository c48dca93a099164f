// Fresh outputs for the CPU ops.
//
// A large new tensor is fresh memory from the OS: the first write to each 4 KB page faults,
// and on virtual machines those faults can cost more than the kernel that fills the tensor
// (64 MB: ~35 ms of faults against ~5 ms of writes, measured on the development VM). Asking
// for transparent huge pages on the untouched pages before the kernel writes them cuts the
// fault count by 512. This is what torch's THP_MEM_ALLOC_ENABLE does for every allocation;
// here it is done for our own outputs only.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace bitcodes_ext::cpu {

inline at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  auto out = at::empty(sizes, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHugePage = uintptr_t(2) << 20;
  const size_t bytes = out.nbytes();
  if (bytes >= 4 * kHugePage) {
    const auto begin = reinterpret_cast<uintptr_t>(out.data_ptr());
    const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
    const uintptr_t last = (begin + bytes) & ~(kHugePage - 1);
    // Advice only: where it is refused (THP off, memory already touched) nothing changes.
    if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#endif
  return out;
}

}  // namespace bitcodes_ext::cpu
