// Test-only control of the emulator: the order in which a block's threads are scheduled, the SM
// count the host code sees, and the seed of the stand-in CUDA generator.
#include "emu_cuda.h"
#include <torch/library.h>

namespace {
// 0: forward, 1: reverse, 2: random. A result that changes with the order reveals a race.
void set_order(int64_t mode) { emu::S.order_mode = static_cast<int>(mode); }
// Launch choices that depend on how many SMs there are to fill.
void set_sm_count(int64_t count) { emu::device_prop.multiProcessorCount = static_cast<int>(count); }
// As torch.cuda.manual_seed: the seed, and the offset back to 0.
void manual_seed(int64_t seed) {
  at::Generator gen = at::cuda::detail::getDefaultCUDAGenerator();  // shares the one generator
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(static_cast<uint64_t>(seed));
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(bitcodes_emu, m) {
  m.def("set_order", &set_order);
  m.def("set_sm_count", &set_sm_count);
  m.def("manual_seed", &manual_seed);
}
