// CUDA forward and training backward of bitcodes_ext::forward: the checks, then the route
// (route.h): the CUDA-core kernels here (bitcodes_kernels.cuh), or route `gemm` (bitcodes_gemm.cu).
#include "../bits_dtype.h"
#include "../checks.h"
#include "../codebook_terms.h"
#include "bitcodes_kernels.cuh"
#include "codebook_sums.cuh"
#include "gemm_launch.h"
#include "launch.cuh"
#include "mma_launch.h"
#include "route.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

namespace bitcodes_ext::cuda {
namespace {

// Fused (one kernel) where the bits fit its mask and its token tiles fill the GPU at least once;
// otherwise split: bits over a grid of (token tiles, bit tiles), then y over (token tiles,
// feature tiles) from the packed bits, so that small batches still occupy every SM.
template <typename scalar_t, typename acc_t, bool kTraining, bool kDrawNoise>
void launch_forward(ForwardArgs<scalar_t, acc_t> args, const at::TensorOptions& options) {
  with_width(args.B, [&](auto width) {
    using T = TileFor<acc_t, decltype(width)::value>;
    if (args.B <= kFusedBits && ceil_div(args.N, T::kRows) >= sm_count()) {
      forward_kernel<scalar_t, T, kTraining, kDrawNoise, true><<<grid_of(args.N, T::kRows), T::kThreads, 0, current_stream()>>>(args);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    const int64_t words = bit_words(args.B);
    const at::Tensor packed = at::empty({args.N, words}, options.dtype(at::kInt));
    args.words = reinterpret_cast<uint32_t*>(packed.mutable_data_ptr<int32_t>());
    forward_kernel<scalar_t, T, kTraining, kDrawNoise, false><<<grid_of(args.N, T::kRows, ceil_div(args.B, T::kCols)), T::kThreads, 0, current_stream()>>>(args);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    using Y = DecodeTileFor<acc_t>;
    decode_kernel<scalar_t, Y, PackedBits><<<grid_of(args.N, Y::kRows, ceil_div(args.D, Y::kCols)), Y::kThreads, 0, current_stream()>>>(
        PackedBits{args.words, args.N, words}, args.N, args.B, args.D, args.codebook, args.y);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cuda(const at::Tensor& x_in, const at::Tensor& codebook,
                                                            const std::optional<at::Tensor>& noise_in,
                                                            double temperature, bool training, bool euclidean,
                                                            at::ScalarType bits_dtype) {
  constexpr const char* op = "bitcodes_ext::forward";
  const auto noise = check_forward_and_convert_noise(x_in, codebook, noise_in, temperature, training, op);
  check_bits_dtype(bits_dtype, op);
  const c10::cuda::CUDAGuard device_guard(x_in.device());
  const int64_t B = codebook.size(0) / 2, D = codebook.size(1);
  const auto acc_type = at::toOpMathType(x_in.scalar_type());
  const auto x = x_in.contiguous();
  const int64_t N = x.numel() / D;
  const Problem problem{CudaOp::kForward, x.scalar_type(), N, B, D, training,
                        int64_t(c10::elementSize(bits_dtype))};
  const Route route = choose_route(problem);
  if (route == Route::kGemm) return gemm::forward(x, codebook, noise, training, euclidean, bits_dtype);
  // The CUDA-core and mma kernels write int64 bits; other dtypes are converted after them.
  auto y = at::empty(x.sizes(), x.options());
  auto bits = at::empty(with_last_dim(x, B), x.options().dtype(at::kLong));
  auto z = at::empty(training ? with_last_dim(x, B) : std::vector<int64_t>{0}, x.options().dtype(acc_type));
  if (N == 0) return {y, bits.to(bits_dtype), z};

  const auto cb = codebook.to(acc_type).contiguous();
  const auto w = pair_differences(cb).contiguous();
  const auto bias = euclidean ? euclidean_bias(cb).contiguous() : at::zeros({B}, cb.options());
  const bool draw_noise = training && !noise.defined();
  const auto philox = draw_noise ? reserve_philox(B) : at::PhiloxCudaState();
  if (route == Route::kMma) {
    mma_forward(x, codebook.contiguous(), bias, noise, philox, training, draw_noise, y, bits, z);
    return {y, bits.to(bits_dtype), z};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bitcodes_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const ForwardArgs<scalar_t, acc_t> args{
        x.const_data_ptr<scalar_t>(), w.const_data_ptr<acc_t>(), bias.const_data_ptr<acc_t>(),
        cb.const_data_ptr<acc_t>(), noise.defined() ? noise.const_data_ptr<acc_t>() : nullptr,
        N, B, D, philox, y.mutable_data_ptr<scalar_t>(), bits.mutable_data_ptr<int64_t>(),
        training ? z.mutable_data_ptr<acc_t>() : nullptr, nullptr};
    if (!training) {
      launch_forward<scalar_t, acc_t, false, false>(args, x.options());
    } else if (draw_noise) {
      launch_forward<scalar_t, acc_t, true, true>(args, x.options());
    } else {
      launch_forward<scalar_t, acc_t, true, false>(args, x.options());
    }
  });
  return {y, bits.to(bits_dtype), z};
}

std::tuple<at::Tensor, at::Tensor> backward_cuda(const at::Tensor& grad_y_in, const at::Tensor& x_in,
                                                 const at::Tensor& codebook, const at::Tensor& z_in,
                                                 double temperature, bool euclidean) {
  constexpr const char* op = "bitcodes_ext::backward";
  check_backward(grad_y_in, x_in, codebook, z_in, temperature, op);
  const int64_t B = codebook.size(0) / 2, D = codebook.size(1);
  const auto acc_type = at::toOpMathType(x_in.scalar_type());
  const c10::cuda::CUDAGuard device_guard(x_in.device());

  const auto x = x_in.contiguous(), grad_y = grad_y_in.contiguous(), z = z_in.contiguous();
  const int64_t N = x.numel() / D;
  if (choose_route({CudaOp::kBackward, x.scalar_type(), N, B, D, true}) == Route::kGemm) {
    return gemm::backward(grad_y, x, codebook, z, temperature, euclidean);
  }
  const auto acc_options = x.options().dtype(acc_type);
  auto dx = at::empty(x.sizes(), x.options());
  if (N == 0) return {dx, at::zeros_like(codebook)};
  const auto cb = codebook.to(acc_type).contiguous();
  const auto w = pair_differences(cb).contiguous();
  auto r = at::empty({N, B}, acc_options);
  at::Tensor S;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bitcodes_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    with_width(B, [&](auto width) {
      using T = TileFor<acc_t, decltype(width)::value>;
      straight_through_kernel<scalar_t, T><<<grid_of(N, T::kRows, ceil_div(B, T::kCols)), T::kThreads, 0, current_stream()>>>(
          grad_y.const_data_ptr<scalar_t>(), w.const_data_ptr<acc_t>(), z.const_data_ptr<acc_t>(), N, B, D,
          acc_t(temperature), r.mutable_data_ptr<acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    using X = TileFor<acc_t, 64>;
    input_grad_kernel<scalar_t, X><<<grid_of(N, X::kRows, ceil_div(D, X::kCols)), X::kThreads, 0, current_stream()>>>(
        r.const_data_ptr<acc_t>(), w.const_data_ptr<acc_t>(), N, B, D, dx.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const Matrix<acc_t, Positive<acc_t>> bits{z.const_data_ptr<acc_t>(), N, B, {}};
    S = codebook_sums<scalar_t, acc_t>(bits, grad_y, x, r, N, B, D, acc_options);
  });
  const auto grad_sum = grad_y.view({N, D}).sum({0}, /*keepdim=*/false, acc_type);
  return {dx, assemble_codebook_grad(S, grad_sum, r.sum(0), cb, euclidean, codebook.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(bitcodes_ext, CUDA, m) {
  m.impl("forward", &forward_cuda);
  m.impl("backward", &backward_cuda);
}

}  // namespace bitcodes_ext::cuda
