// CPU nearest-code vector quantization: distance and argmin fused over tiles of the codebook,
// so no N x K matrix exists; extra memory is one (tokens x codes) tile per thread.
//   score = |c|^2 - 2 x.c  (|x|^2 is the same for every code of a token)
// The chosen code's distance is then recomputed directly in double, as accurate as scipy's. The
// winner is chosen by vq_select.h's rule, as on every CUDA route.
#include "../checks.h"
#include "../vq_select.h"
#include "microkernels.h"
#include "output_memory.h"
#include "panels.h"
#include "tiles.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <vector>

namespace bitcodes_ext::cpu {
namespace {

// The codebook is transposed and cut into column panels (panels.h): panel j holds codes
// [Pj, Pj + P) as D rows of P contiguous values, P = panel_width(), the projection's widest
// register block, so a panel streams from L1 for every token of a tile (a plain D x K transpose
// strides by K between rows, and its rows alias the same cache sets).

// Panels per tile of the codebook: the tile of scores (tokens x codes) stays in L1/L2.
constexpr int64_t kPanelsPerTile = 10;

template <typename scalar_t, typename acc_t>
void vq_kernel(const scalar_t* x, int64_t N, int64_t D, const acc_t* panels /* Kp / P panels of D x P */,
               const acc_t* norms /* Kp, +inf past K */, const scalar_t* codebook, int64_t K, int64_t Kp,
               int64_t* codes, scalar_t* dist) {
  using V = Vec<acc_t>;
  constexpr int64_t L = V::size(), W = panel_width<acc_t>(), kCodeTile = kPanelsPerTile * W;
  at::parallel_for(0, num_tiles(N), 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> x_acc(conversion_buffer_size<scalar_t, acc_t>(kTileTokens * D));
    std::vector<acc_t> scores(kTileTokens * kCodeTile);
    // Per token and lane: the best score so far and its code (as acc_t: exact below 2^24 codes
    // in float). Each lane sees its codes in increasing order (vq_better_later_code), and the
    // reduction across lanes then applies vq_better.
    std::vector<acc_t> lane_best(kTileTokens * L), lane_code(kTileTokens * L);
    acc_t offsets[L];
    for (int64_t j = 0; j < L; ++j) offsets[j] = acc_t(j);
    const V lane_offsets = V::loadu(offsets);
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t t0 = tile * kTileTokens, nt = std::min(kTileTokens, N - t0);
      const acc_t* xa = tile_as_acc(x + t0 * D, nt * D, x_acc.data());
      std::fill(lane_best.begin(), lane_best.end(), std::numeric_limits<acc_t>::infinity());
      std::fill(lane_code.begin(), lane_code.end(), acc_t(0));
      for (int64_t k0 = 0; k0 < Kp; k0 += kCodeTile) {
        const int64_t nk = std::min(kCodeTile, Kp - k0);
        for (int64_t b = 0; b < nk; b += W)
          project_columns<acc_t, 4, 3>(xa, nt, D, panels + (k0 + b) * D, W, D, scores.data() + b, kCodeTile);
        for (int64_t t = 0; t < nt; ++t) {
          V best = V::loadu(lane_best.data() + t * L), code = V::loadu(lane_code.data() + t * L);
          for (int64_t k = 0; k < nk; k += L) {
            const V score = V::loadu(norms + k0 + k) - V(acc_t(2)) * V::loadu(scores.data() + t * kCodeTile + k);
            const V candidate = lane_offsets + V(acc_t(k0 + k));
            const V better = vq_better_later_code(score, best);
            best = V::blendv(best, score, better);
            code = V::blendv(code, candidate, better);
          }
          best.store(lane_best.data() + t * L);
          code.store(lane_code.data() + t * L);
        }
      }
      for (int64_t t = 0; t < nt; ++t) {
        // Lanes to one winner, by the same rule.
        acc_t best = std::numeric_limits<acc_t>::infinity();
        int64_t k = 0;
        for (int64_t j = 0; j < L; ++j) {
          const acc_t score = lane_best[t * L + j];
          const int64_t code = int64_t(lane_code[t * L + j]);
          if (vq_better(score, code, best, k)) {
            best = score;
            k = code;
          }
        }
        k = std::min(k, K - 1);
        double sum = 0;
        for (int64_t d = 0; d < D; ++d) {
          const double diff = double(x[(t0 + t) * D + d]) - double(codebook[k * D + d]);
          sum += diff * diff;
        }
        codes[t0 + t] = k;
        dist[t0 + t] = scalar_t(std::sqrt(sum));
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> vq_cpu(const at::Tensor& observations_in, const at::Tensor& codebook_in) {
  constexpr const char* op = "bitcodes_ext::vq";
  check_vq_codebook(codebook_in, op);
  check_x(observations_in, codebook_in, "observations", op);
  // The kernel carries code indices in float lanes, exact up to 2^24.
  TORCH_CHECK_VALUE(codebook_in.size(0) <= (int64_t(1) << 24), op,
                    ": codebook may have at most 2^24 codes, got ", codebook_in.size(0));
  const auto x = observations_in.contiguous(), codebook = codebook_in.contiguous();
  const int64_t D = codebook.size(1), K = codebook.size(0), N = x.numel() / D;
  const auto lead = x.sizes().slice(0, x.dim() - 1);
  auto codes = empty_output(lead, x.options().dtype(at::kLong));
  auto dist = empty_output(lead, x.options());
  if (N == 0) return {codes, dist};

  const auto acc_type = at::toOpMathType(x.scalar_type());
  const auto cb = codebook.to(acc_type);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bitcodes_vq_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto panels = column_panels(cb.t());  // (Kp / P, D, P), zero past K
    const int64_t Kp = panels.size(0) * panels.size(2);
    auto norms = at::full({Kp}, std::numeric_limits<double>::infinity(), cb.options());
    norms.narrow(0, 0, K).copy_(cb.square().sum(1));
    vq_kernel<scalar_t, acc_t>(x.const_data_ptr<scalar_t>(), N, D, panels.const_data_ptr<acc_t>(),
                               norms.const_data_ptr<acc_t>(), codebook.const_data_ptr<scalar_t>(), K, Kp,
                               codes.mutable_data_ptr<int64_t>(), dist.mutable_data_ptr<scalar_t>());
  });
  return {codes, dist};
}

}  // namespace

TORCH_LIBRARY_IMPL(bitcodes_ext, CPU, m) { m.impl("vq", &vq_cpu); }

}  // namespace bitcodes_ext::cpu
