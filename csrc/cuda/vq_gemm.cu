// Route `gemm` of bitcodes_ext::vq: per chunk of tokens and tile of codes, the scores x.c as one
// ATen GEMM (exact products for bf16/fp16, float32 sums), then the running argmin of
// |c|^2 - 2 x.c per token, with the codes near the lowest score compared by their distance in
// double (vq_epilogues.cuh), and the winner's distance in double. No N x K matrix: the score
// tile is bounded by gemm_plan.h's workspace.
#include "../checks.h"
#include "gemm_ops.h"
#include "gemm_plan.h"
#include "gemm_launch.h"
#include "launch.cuh"
#include "vq_epilogues.cuh"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <cmath>
#include <limits>

namespace bitcodes_ext::cuda::gemm {

std::tuple<at::Tensor, at::Tensor> vq(const at::Tensor& x, const at::Tensor& codebook) {
  const int64_t D = codebook.size(1), K = codebook.size(0), N = x.numel() / D;
  const auto lead = x.sizes().slice(0, x.dim() - 1);
  auto codes = at::empty(lead, x.options().dtype(at::kLong));
  auto dist = at::empty(lead, x.options());
  if (N == 0) return {codes, dist};
  const auto acc_type = at::toOpMathType(x.scalar_type());
  const VqPlan plan(x.scalar_type(), K);
  const int64_t chunk = std::min(plan.chunk, N);
  const auto norms = codebook.to(acc_type).square().sum(1);
  // max |c|^2 over the finite norms (a code with a NaN or inf never wins), left on the device.
  const auto largest_norm = at::where(norms.isfinite(), norms, at::zeros({}, norms.options())).max();
  // A score's relative rounding error, for the argmin's margin: D + 2 roundings in the
  // accumulation type, plus the input rounding of TF32 (or bf16) where cuBLAS may use it for
  // float32 (torch.backends.cuda.matmul.allow_tf32, set_float32_matmul_precision).
  const bool reduced_inputs = x.is_cuda() && x.scalar_type() == at::kFloat && at::globalContext().allowTF32CuBLAS();
  const double unit = (D + 2) * std::ldexp(1.0, acc_type == at::kDouble ? -53 : -24) +
                      (reduced_inputs ? std::ldexp(1.0, -8) : 0.0);
  auto scores = at::empty({chunk, plan.code_stride}, x.options().dtype(acc_type));
  auto best = at::empty({chunk}, scores.options());
  auto exact = at::empty({chunk}, scores.options().dtype(at::kDouble));
  const auto x2 = x.view({N, D});
  auto codes1 = codes.view({N}), dist1 = dist.view({N});
  for (int64_t t0 = 0; t0 < N; t0 += chunk) {
    const int64_t tokens = std::min(chunk, N - t0);
    const auto x_c = x2.narrow(0, t0, tokens);
    auto codes_c = codes1.narrow(0, t0, tokens);
    best.fill_(std::numeric_limits<double>::infinity());
    exact.fill_(std::numeric_limits<double>::infinity());
    codes_c.zero_();
    for (int64_t c0 = 0; c0 < K; c0 += plan.code_chunk) {
      const int64_t count = std::min(plan.code_chunk, K - c0);
      mm_into(scores.narrow(0, 0, tokens).narrow(1, 0, count), x_c, codebook.narrow(0, c0, count).t());
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bitcodes_vq_gemm_argmin", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        vq_argmin_kernel<scalar_t, acc_t><<<vq_grid(tokens), kVqThreads, 0, current_stream()>>>(
            scores.const_data_ptr<acc_t>(), plan.code_stride, norms.const_data_ptr<acc_t>(),
            largest_norm.const_data_ptr<acc_t>(), c0, count, tokens, x_c.const_data_ptr<scalar_t>(),
            codebook.const_data_ptr<scalar_t>(), D, unit, best.mutable_data_ptr<acc_t>(),
            exact.mutable_data_ptr<double>(), codes_c.mutable_data_ptr<int64_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    }
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bitcodes_vq_gemm_distance", [&] {
      vq_distance_kernel<scalar_t><<<vq_grid(tokens), kVqThreads, 0, current_stream()>>>(
          x_c.const_data_ptr<scalar_t>(), codebook.const_data_ptr<scalar_t>(), codes_c.const_data_ptr<int64_t>(),
          tokens, D, dist1.narrow(0, t0, tokens).mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {codes, dist};
}

}  // namespace bitcodes_ext::cuda::gemm
