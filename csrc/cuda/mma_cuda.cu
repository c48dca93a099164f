// Launchers of route `mma` (see mma_launch.h and mma_kernels.cuh).
#include "launch.cuh"
#include "mma_kernels.cuh"
#include "mma_launch.h"
#include "route.h"

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <cstdint>

namespace bitcodes_ext::cuda {

int current_device_major() { return at::cuda::getCurrentDeviceProperties()->major; }

namespace {

// cp.async moves 16-byte chunks from 16-byte aligned addresses; a view that starts elsewhere is
// copied (rows stay aligned because features % 8 == 0).
at::Tensor aligned(const at::Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.const_data_ptr()) % 16 == 0 ? t : t.clone();
}

dim3 mma_blocks(int64_t N) { return dim3(static_cast<unsigned>(ceil_div(N, kMmaTokens))); }

template <typename scalar_t, bool kTraining, bool kDrawNoise>
void launch_forward(const MmaForwardArgs<scalar_t>& args) {
  mma_forward_kernel<scalar_t, kTraining, kDrawNoise><<<mma_blocks(args.N), kMmaThreads, 0, current_stream()>>>(args);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

void mma_forward(const at::Tensor& x_in, const at::Tensor& codebook_in, const at::Tensor& bias,
                 const at::Tensor& noise, const at::PhiloxCudaState& philox, bool training, bool draw_noise,
                 at::Tensor& y, at::Tensor& bits, at::Tensor& z) {
  const auto x = aligned(x_in), codebook = aligned(codebook_in);
  const int64_t B = codebook.size(0) / 2, D = codebook.size(1), N = x.numel() / D;
  TORCH_INTERNAL_ASSERT(D % 8 == 0 && B <= kMmaMaxBits && bias.scalar_type() == at::kFloat);
  AT_DISPATCH_REDUCED_FLOATING_TYPES(x.scalar_type(), "bitcodes_forward_mma", [&] {
    const MmaForwardArgs<scalar_t> args{x.const_data_ptr<scalar_t>(), codebook.const_data_ptr<scalar_t>(),
                                        bias.const_data_ptr<float>(), noise.defined() ? noise.const_data_ptr<float>() : nullptr,
                                        N, B, D, philox, y.mutable_data_ptr<scalar_t>(), bits.mutable_data_ptr<int64_t>(),
                                        training ? z.mutable_data_ptr<float>() : nullptr};
    if (!training) {
      launch_forward<scalar_t, false, false>(args);
    } else if (draw_noise) {
      launch_forward<scalar_t, true, true>(args);
    } else {
      launch_forward<scalar_t, true, false>(args);
    }
  });
}

void mma_vq(const at::Tensor& x_in, const at::Tensor& codebook_in, const at::Tensor& norms, at::Tensor& codes,
            at::Tensor& dist) {
  const auto x = aligned(x_in), codebook = aligned(codebook_in);
  const int64_t K = codebook.size(0), D = codebook.size(1), N = x.numel() / D;
  TORCH_INTERNAL_ASSERT(D % 8 == 0 && norms.scalar_type() == at::kFloat);
  AT_DISPATCH_REDUCED_FLOATING_TYPES(x.scalar_type(), "bitcodes_vq_mma", [&] {
    mma_vq_kernel<scalar_t><<<mma_blocks(N), kMmaThreads, 0, current_stream()>>>(
        x.const_data_ptr<scalar_t>(), codebook.const_data_ptr<scalar_t>(), norms.const_data_ptr<float>(), N, K, D,
        codes.mutable_data_ptr<int64_t>(), dist.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace bitcodes_ext::cuda
