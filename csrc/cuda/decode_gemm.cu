// Route `gemm` of bitcodes_ext::decode and ::decode_backward: the one-hot H over the 2B codebook
// rows per chunk of tokens, then y = H.C and grad_codebook = sum over chunks of H^T g (row 2i
// sums (1 - bit) g and row 2i+1 bit g, which is the whole gradient). 0/1 times the codebook
// is exact in every dtype, so both are float32 (float64) sums of exact products.
#include "../checks.h"
#include "gemm_epilogues.cuh"
#include "gemm_ops.h"
#include "gemm_plan.h"
#include "gemm_launch.h"
#include "launch.cuh"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

namespace bitcodes_ext::cuda::gemm {
namespace {

// H for tokens t0 .. t0 + tokens into onehot's first rows.
void one_hot(const at::Tensor& bits, int64_t t0, int64_t tokens, int64_t B, at::Tensor& onehot) {
  const uint8_t* rows = bits.const_data_ptr<uint8_t>() + t0 * B;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, onehot.scalar_type(), "bitcodes_one_hot", [&] {
    one_hot_kernel<scalar_t><<<elementwise_grid(tokens * B), kEpilogueThreads, 0, current_stream()>>>(
        rows, tokens, B, onehot.mutable_data_ptr<scalar_t>(), onehot.size(1));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

at::Tensor decode(const at::Tensor& bits, const at::Tensor& codebook) {
  const int64_t B = codebook.size(0) / 2, D = codebook.size(1), N = bits.numel() / B;
  auto y = at::empty(with_last_dim(bits, D), codebook.options());
  if (N == 0) return y;
  const ForwardPlan plan(codebook.scalar_type(), B, /*with_logits=*/false);
  const int64_t chunk = std::min(plan.chunk, N);
  const auto cb = codebook.contiguous();
  auto onehot = at::empty({chunk, plan.onehot_stride}, codebook.options());
  auto y2 = y.view({N, D});
  for (int64_t t0 = 0; t0 < N; t0 += chunk) {
    const int64_t tokens = std::min(chunk, N - t0);
    one_hot(bits, t0, tokens, B, onehot);
    mm_into(y2.narrow(0, t0, tokens), onehot.narrow(0, 0, tokens).narrow(1, 0, 2 * B), cb);
  }
  return y;
}

at::Tensor decode_backward(const at::Tensor& grad_y, const at::Tensor& bits, const at::Tensor& codebook) {
  const int64_t B = codebook.size(0) / 2, D = codebook.size(1), N = bits.numel() / B;
  if (N == 0) return at::zeros_like(codebook);
  const ForwardPlan plan(codebook.scalar_type(), B, /*with_logits=*/false);
  const int64_t chunk = std::min(plan.chunk, N);
  auto onehot = at::empty({chunk, plan.onehot_stride}, codebook.options());
  auto grad = at::zeros({2 * B, D}, codebook.options().dtype(at::toOpMathType(codebook.scalar_type())));
  const auto g2 = grad_y.view({N, D});
  for (int64_t t0 = 0; t0 < N; t0 += chunk) {
    const int64_t tokens = std::min(chunk, N - t0);
    one_hot(bits, t0, tokens, B, onehot);
    mm_accumulate(grad, onehot.narrow(0, 0, tokens).narrow(1, 0, 2 * B).t(), g2.narrow(0, t0, tokens));
  }
  return grad.to(codebook.scalar_type());
}

}  // namespace bitcodes_ext::cuda::gemm
