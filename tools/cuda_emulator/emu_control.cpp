// Test-only control of the emulator: the order in which a block's warps and threads are
// scheduled, the SM count host code sees, the seed of its CUDA generator, and the route
// csrc/cuda/route.h picks for a problem.
#include "emu_cuda.h"
#include "cuda/route.h"

#include <torch/library.h>

#include <string>

namespace {
// 0: forward, 1: reverse, 2: random. A result that changes with the order reveals a race.
void set_order(int64_t mode) { emu::S.order_mode = static_cast<int>(mode); }
// Launch choices that depend on how many SMs there are to fill.
void set_sm_count(int64_t count) { at::cuda::getCurrentDeviceProperties()->multiProcessorCount = static_cast<int>(count); }

// Reseeds the emulator's stand-in for the default CUDA generator (offset back to 0), so that two
// calls draw the same training noise.
void seed_cuda_generator(int64_t seed) {
  at::cuda::detail::getDefaultCUDAGenerator().get<at::CUDAGeneratorImpl>()->set_current_seed(static_cast<uint64_t>(seed));
}

// The name of the route choose_route takes for an op (by its schema's name) on inputs of `like`'s
// dtype, under the current BITCODES_CUDA_ROUTE.
std::string route_for(const std::string& op, const at::Tensor& like, int64_t tokens, int64_t width, int64_t features,
                      bool training) {
  using namespace bitcodes_ext::cuda;
  return route_name(choose_route({cuda_op_named(op), like.scalar_type(), tokens, width, features, training}));
}
}  // namespace

// The library is built with the alignment sanitizer (build.py): a misaligned vector access aborts
// (SIGABRT, so pytest's fault handler names the test) instead of exiting with status 1. Options
// must come from here: UBSAN_OPTIONS is read when the process starts, before any test sets it.
extern "C" const char* __ubsan_default_options() { return "abort_on_error=1"; }

TORCH_LIBRARY_FRAGMENT(bitcodes_emu, m) {
  m.def("set_order", &set_order);
  m.def("set_sm_count", &set_sm_count);
  m.def("route_for", &route_for);
  m.def("seed_cuda_generator", &seed_cuda_generator);
}
