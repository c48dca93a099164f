// CUDA decode (from_bits) and its codebook gradient: y = sum_i c[2i + bit_i]. The checks, then
// the route (route.h): the CUDA-core kernels here, or route `gemm` (decode_gemm.cu).
#include "../checks.h"
#include "../codebook_terms.h"
#include "codebook_sums.cuh"
#include "gemm_launch.h"
#include "launch.cuh"
#include "overlapped_sum.cuh"
#include "route.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

namespace bitcodes_ext::cuda {
namespace {

// bits of any integer type -> contiguous uint8 0/1. Checking the values costs one reduction
// and a host synchronisation; bool needs neither.
at::Tensor checked_bits(const at::Tensor& bits_in, const char* op) {
  const auto bits = bits_in.contiguous();
  if (bits.scalar_type() == at::kBool) return bits.view(at::kByte);
  TORCH_CHECK_VALUE(!(bits.ne(0) & bits.ne(1)).any().item<bool>(), op, ": bits must contain only 0 and 1");
  return bits.to(at::kByte);
}

at::Tensor decode_cuda(const at::Tensor& bits_in, const at::Tensor& codebook) {
  constexpr const char* op = "bitcodes_ext::decode";
  check_codebook(codebook, op);
  check_bits(bits_in, codebook, op);
  const c10::cuda::CUDAGuard device_guard(codebook.device());
  const auto bits = checked_bits(bits_in, op);
  const int64_t B = codebook.size(0) / 2, D = codebook.size(1), N = bits.numel() / B;
  if (choose_route({CudaOp::kDecode, codebook.scalar_type(), N, B, D, false}) == Route::kGemm) {
    return gemm::decode(bits, codebook);
  }
  const auto shape = with_last_dim(bits, D);
  auto y = at::empty(shape, codebook.options());
  if (N == 0) return y;
  const auto cb = codebook.to(at::toOpMathType(codebook.scalar_type())).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, codebook.scalar_type(), "bitcodes_decode_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    using T = DecodeTileFor<acc_t>;
    decode_kernel<scalar_t, T, ByteBits><<<grid_of(N, T::kRows, ceil_div(D, T::kCols)), T::kThreads, 0, current_stream()>>>(
        ByteBits{bits.const_data_ptr<uint8_t>(), N, B}, N, B, D, cb.const_data_ptr<acc_t>(), y.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

at::Tensor decode_backward_cuda(const at::Tensor& grad_y_in, const at::Tensor& bits_in, const at::Tensor& codebook) {
  constexpr const char* op = "bitcodes_ext::decode_backward";
  check_decode_backward(grad_y_in, bits_in, codebook, op);
  const int64_t B = codebook.size(0) / 2, D = codebook.size(1);
  const c10::cuda::CUDAGuard device_guard(codebook.device());
  const auto bits = checked_bits(bits_in, op);
  const auto grad_y = grad_y_in.contiguous();
  const int64_t N = bits.numel() / B;
  if (choose_route({CudaOp::kDecodeBackward, codebook.scalar_type(), N, B, D, false}) == Route::kGemm) {
    return gemm::decode_backward(grad_y, bits, codebook);
  }
  const auto acc_type = at::toOpMathType(codebook.scalar_type());
  const auto acc_options = codebook.options().dtype(acc_type);
  if (N == 0) return at::zeros_like(codebook);
  const auto cb = codebook.to(acc_type).contiguous();
  at::Tensor S;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, codebook.scalar_type(), "bitcodes_decode_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Matrix<uint8_t, Nonzero<acc_t>> byte_bits{bits.const_data_ptr<uint8_t>(), N, B, {}};
    S = codebook_sums<scalar_t, acc_t>(byte_bits, grad_y, at::Tensor(), at::Tensor(), N, B, D, acc_options);
  });
  const auto grad_sum = grad_y.view({N, D}).sum({0}, /*keepdim=*/false, acc_type);
  return assemble_codebook_grad(S, grad_sum, at::Tensor(), cb, /*euclidean=*/false, codebook.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(bitcodes_ext, CUDA, m) {
  m.impl("decode", &decode_cuda);
  m.impl("decode_backward", &decode_backward_cuda);
}

}  // namespace bitcodes_ext::cuda
