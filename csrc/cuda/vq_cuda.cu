// CUDA nearest-code vector quantization: one block per tile of tokens walks the codebook in
// tiles of 64 codes, scoring |c|^2 - 2 x.c and keeping each thread's best; the threads of a
// token's row then agree on the winner, and recompute its distance directly in double. Both
// choices are vq_select.h's rule. No N x K matrix exists; extra memory is O(K) for the norms.
// That is route `cores` (route.h); route `gemm` is in vq_gemm.cu, route `mma` in mma_kernels.cuh.
#include "../checks.h"
#include "../vq_select.h"
#include "gemm_launch.h"
#include "launch.cuh"
#include "mma_launch.h"
#include "route.h"
#include "tile_gemm.cuh"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <limits>

namespace bitcodes_ext::cuda {
namespace {

template <typename scalar_t, class T>
__global__ void __launch_bounds__(T::kThreads, T::kMinBlocks)
    vq_kernel(const scalar_t* x, const typename T::acc* codebook_acc, const typename T::acc* norms,
              const scalar_t* codebook, int64_t N, int64_t K, int64_t D, int64_t* codes, scalar_t* dist) {
  using acc_t = typename T::acc;
  __shared__ TileStage<T> stage;
  const int64_t row0 = int64_t(blockIdx.x) * T::kRows;
  const int cl = T::col_lane();
  // Each thread sees its columns in increasing code order (vq_better_later_code); a row with no
  // finite score keeps code 0.
  acc_t best[T::kMR];
  long long code[T::kMR];
#pragma unroll
  for (int m = 0; m < T::kMR; ++m) {
    best[m] = std::numeric_limits<acc_t>::infinity();
    code[m] = 0;
  }
  for (int64_t c0 = 0; c0 < K; c0 += T::kCols) {
    typename T::Acc acc;
    zero<T>(acc);
    tile_gemm<T, true, true>(matrix<acc_t>(x, N, D), row0, matrix<acc_t>(codebook_acc, K, D), c0, 0, D, stage, acc);
#pragma unroll
    for (int m = 0; m < T::kMR; ++m)
#pragma unroll
      for (int n = 0; n < T::kMC; ++n) {
        const int64_t c = c0 + T::col(n);
        if (c >= K) continue;
        const acc_t score = norms[c] - acc_t(2) * acc[m][n];
        if (vq_better_later_code(score, best[m])) {
          best[m] = score;
          code[m] = c;
        }
      }
  }
  // A row's column lanes are consecutive lanes of one warp.
#pragma unroll
  for (int m = 0; m < T::kMR; ++m) {
    for (int lanes = T::kColLanes / 2; lanes >= 1; lanes /= 2) {
      const acc_t other = __shfl_xor_sync(0xffffffffu, best[m], lanes);
      const long long other_code = __shfl_xor_sync(0xffffffffu, code[m], lanes);
      if (vq_better(other, other_code, best[m], code[m])) {
        best[m] = other;
        code[m] = other_code;
      }
    }
    const int64_t t = row0 + T::row(m);
    double sum = 0;
    if (t < N) {
      for (int64_t d = cl; d < D; d += T::kColLanes) {
        const double diff = static_cast<double>(x[t * D + d]) - static_cast<double>(codebook[code[m] * D + d]);
        sum += diff * diff;
      }
    }
    for (int lanes = T::kColLanes / 2; lanes >= 1; lanes /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, lanes);
    if (t < N && cl == 0) {
      codes[t] = code[m];
      dist[t] = static_cast<scalar_t>(sqrt(sum));
    }
  }
}

std::tuple<at::Tensor, at::Tensor> vq_cuda(const at::Tensor& observations_in, const at::Tensor& codebook_in) {
  constexpr const char* op = "bitcodes_ext::vq";
  check_vq_codebook(codebook_in, op);
  check_x(observations_in, codebook_in, "observations", op);
  const c10::cuda::CUDAGuard device_guard(codebook_in.device());
  const auto x = observations_in.contiguous(), codebook = codebook_in.contiguous();
  const int64_t D = codebook.size(1), K = codebook.size(0), N = x.numel() / D;
  const Route route = choose_route({CudaOp::kVq, x.scalar_type(), N, K, D, false});
  if (route == Route::kGemm) return gemm::vq(x, codebook);
  const auto lead = x.sizes().slice(0, x.dim() - 1);
  auto codes = at::empty(lead, x.options().dtype(at::kLong));
  auto dist = at::empty(lead, x.options());
  if (N == 0) return {codes, dist};
  const auto cb = codebook.to(at::toOpMathType(x.scalar_type()));
  const auto norms = cb.square().sum(1);
  if (route == Route::kMma) {
    mma_vq(x, codebook, norms, codes, dist);
    return {codes, dist};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bitcodes_vq_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    using T = TileFor<acc_t, 64>;
    vq_kernel<scalar_t, T><<<grid_of(N, T::kRows), T::kThreads, 0, current_stream()>>>(
        x.const_data_ptr<scalar_t>(), cb.const_data_ptr<acc_t>(), norms.const_data_ptr<acc_t>(),
        codebook.const_data_ptr<scalar_t>(), N, K, D, codes.mutable_data_ptr<int64_t>(),
        dist.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {codes, dist};
}

}  // namespace

TORCH_LIBRARY_IMPL(bitcodes_ext, CUDA, m) { m.impl("vq", &vq_cuda); }

}  // namespace bitcodes_ext::cuda
