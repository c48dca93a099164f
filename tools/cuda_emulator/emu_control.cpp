// Test-only control of the emulator: the order in which a block's threads are scheduled, and
// the seed of the stand-in CUDA generator.
#include "emu_cuda.h"
#include <torch/library.h>

#include <mutex>

namespace {
// 0: forward, 1: reverse, 2: random. A result that changes with the order reveals a race.
void set_order(int64_t mode) { emu::S.order_mode = static_cast<int>(mode); }

// torch.manual_seed does not reach the stand-in generator; this reseeds it as it would a GPU's.
void seed_cuda_generator(int64_t seed) {
  auto* gen = at::cuda::detail::getDefaultCUDAGenerator().get<at::CUDAGeneratorImpl>();
  std::lock_guard<std::mutex> lock(gen->mutex_);
  gen->set_current_seed(static_cast<uint64_t>(seed));
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(bitcodes_emu, m) {
  m.def("set_order", &set_order);
  m.def("seed_cuda_generator", &seed_cuda_generator);
}
