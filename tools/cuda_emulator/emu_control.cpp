// Test-only controls of the emulator: thread order, the stand-in generator, launch log.
#include "emu_cuda.h"
#include <torch/library.h>

namespace {
void set_order(int64_t mode) { emu::S.order_mode = static_cast<int>(mode); }
void set_philox(int64_t seed, int64_t offset) {
  auto* g = at::cuda::detail::getDefaultCUDAGenerator().get<at::CUDAGeneratorImpl>();
  g->seed_ = static_cast<uint64_t>(seed);
  g->offset_ = static_cast<uint64_t>(offset);
}
int64_t philox_offset() {
  return static_cast<int64_t>(at::cuda::detail::getDefaultCUDAGenerator().get<at::CUDAGeneratorImpl>()->offset_);
}
std::string take_log() {
  std::string s = emu::S.log;
  emu::S.log.clear();
  return s;
}
int64_t barriers() { return emu::S.total_barriers; }
}  // namespace

TORCH_LIBRARY_FRAGMENT(bitcodes_emu, m) {
  m.def("set_order", &set_order);
  m.def("set_philox", &set_philox);
  m.def("philox_offset", &philox_offset);
  m.def("take_log", &take_log);
  m.def("barriers", &barriers);
}
