// Test-only control of the emulator: the order in which a block's warps and threads are
// scheduled, the seed of its CUDA generator, and the route csrc/cuda/route.h picks for a problem.
#include "emu_cuda.h"
#include "cuda/route.h"

#include <torch/library.h>

#include <string>

namespace {
// 0: forward, 1: reverse, 2: random. A result that changes with the order reveals a race.
void set_order(int64_t mode) { emu::S.order_mode = static_cast<int>(mode); }

// Reseeds the emulator's stand-in for the default CUDA generator (offset back to 0), so that two
// calls draw the same training noise.
void seed_cuda_generator(int64_t seed) {
  at::cuda::detail::getDefaultCUDAGenerator().get<at::CUDAGeneratorImpl>()->set_current_seed(static_cast<uint64_t>(seed));
}

// The name of the route choose_route takes for an op ("forward", "backward", "decode",
// "decode_backward", "vq") on inputs of `like`'s dtype, under the current BITCODES_CUDA_ROUTE.
std::string route_for(const std::string& op, const at::Tensor& like, int64_t tokens, int64_t width, int64_t features,
                      bool training) {
  using bitcodes_ext::cuda::CudaOp;
  const CudaOp ops[] = {CudaOp::kForward, CudaOp::kBackward, CudaOp::kDecode, CudaOp::kDecodeBackward, CudaOp::kVq};
  const char* names[] = {"forward", "backward", "decode", "decode_backward", "vq"};
  for (int i = 0; i < 5; ++i)
    if (op == names[i])
      return bitcodes_ext::cuda::route_name(
          bitcodes_ext::cuda::choose_route({ops[i], like.scalar_type(), tokens, width, features, training}));
  TORCH_CHECK(false, "unknown op ", op);
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(bitcodes_emu, m) {
  m.def("set_order", &set_order);
  m.def("route_for", &route_for);
  m.def("seed_cuda_generator", &seed_cuda_generator);
}
