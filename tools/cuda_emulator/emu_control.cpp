// Test-only control of the emulator: the order in which a block's threads are scheduled.
#include "emu_cuda.h"
#include <torch/library.h>

namespace {
// 0: forward, 1: reverse, 2: random. A result that changes with the order reveals a race.
void set_order(int64_t mode) { emu::S.order_mode = static_cast<int>(mode); }
}  // namespace

TORCH_LIBRARY_FRAGMENT(bitcodes_emu, m) { m.def("set_order", &set_order); }
