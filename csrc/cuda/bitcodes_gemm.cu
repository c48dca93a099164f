// Route `gemm` of bitcodes_ext::forward and ::backward: ATen GEMMs and our epilogues per chunk of
// tokens (gemm_plan.h says what each workspace holds and why the products are exact).
//   forward:  L = x.G^T; threshold -> z, bits, one-hot H; y = H.C
//   backward: U = g.G^T; straight-through -> E = [bits, 1 | r parts]; dx = E.Right;
//             S1 = [bits, 1]^T g, S2 = (r parts)^T x; the codebook gradient from S, sum_t g, sum_t r
#include "../bits_dtype.h"
#include "../checks.h"
#include "../codebook_terms.h"
#include "gemm_epilogues.cuh"
#include "gemm_ops.h"
#include "gemm_plan.h"
#include "gemm_launch.h"
#include "launch.cuh"
#include "noise.cuh"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

namespace bitcodes_ext::cuda::gemm {
namespace {

// The rows that x (or g) multiplies: the 2B codebook rows in the input dtype for pairs, else
// W = c[2i+1] - c[2i] in the accumulation type.
at::Tensor logit_rows(const at::Tensor& codebook, const at::Tensor& cb_acc, bool pairs) {
  return pairs ? codebook.contiguous() : pair_differences(cb_acc).contiguous();
}

// Rows count .. aligned(count) of zeros under `rows`.
at::Tensor pad_rows(const at::Tensor& rows, int64_t count) {
  auto out = at::zeros({aligned(count), rows.size(1)}, rows.options());
  out.narrow(0, 0, count).copy_(rows);
  return out;
}

// The right operand of dx = E[dx block] . Right (BackwardPlan): pairs
// [c_odd; c_odd; -c_even; -c_even] in the input dtype (negation is exact), full types W.
at::Tensor dx_rows(const at::Tensor& codebook, const at::Tensor& cb_acc, bool pairs, int64_t B) {
  if (!pairs) return pad_rows(pair_differences(cb_acc), B);
  const auto odd = pad_rows(codebook.slice(0, 1, c10::nullopt, 2), B);
  const auto even = pad_rows(codebook.slice(0, 0, c10::nullopt, 2).neg(), B);
  return at::cat({odd, odd, even, even}, 0);
}

template <typename scalar_t, typename acc_t, typename bits_t, bool kPairs, bool kTraining, bool kDrawNoise>
void launch_threshold(const ThresholdArgs<scalar_t, acc_t, bits_t>& args) {
  const auto grid = elementwise_grid(args.tokens * ceil_div(args.B, 4));
  threshold_kernel<scalar_t, acc_t, bits_t, kPairs, kTraining, kDrawNoise><<<grid, kEpilogueThreads, 0, current_stream()>>>(args);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, typename acc_t, typename bits_t, bool kPairs>
void threshold(const ThresholdArgs<scalar_t, acc_t, bits_t>& args, bool training, bool draw_noise) {
  if (!training) {
    launch_threshold<scalar_t, acc_t, bits_t, kPairs, false, false>(args);
  } else if (draw_noise) {
    launch_threshold<scalar_t, acc_t, bits_t, kPairs, true, true>(args);
  } else {
    launch_threshold<scalar_t, acc_t, bits_t, kPairs, true, false>(args);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& codebook,
                                                       const at::Tensor& noise, bool training, bool euclidean,
                                                       at::ScalarType bits_dtype) {
  const int64_t B = codebook.size(0) / 2, D = codebook.size(1), N = x.numel() / D;
  const auto acc_type = at::toOpMathType(x.scalar_type());
  auto y = at::empty(x.sizes(), x.options());
  auto bits = at::empty(with_last_dim(x, B), x.options().dtype(bits_dtype));
  auto z = at::empty(training ? with_last_dim(x, B) : std::vector<int64_t>{0}, x.options().dtype(acc_type));
  if (N == 0) return {y, bits, z};

  const ForwardPlan plan(x.scalar_type(), B);
  const int64_t chunk = std::min(plan.chunk, N);
  const auto cb = codebook.contiguous();
  const auto cb_acc = codebook.to(acc_type).contiguous();
  const auto rows_t = logit_rows(codebook, cb_acc, plan.pairs).t();
  const auto bias = euclidean ? euclidean_bias(cb_acc).contiguous() : at::zeros({B}, cb_acc.options());
  const bool draw_noise = training && !noise.defined();
  const auto philox = draw_noise ? reserve_philox(B) : at::PhiloxCudaState();
  auto logits = at::empty({chunk, plan.logit_stride}, cb_acc.options());
  auto onehot = at::empty({chunk, plan.onehot_stride}, x.options());
  const auto x2 = x.view({N, D});
  auto y2 = y.view({N, D});

  for (int64_t t0 = 0; t0 < N; t0 += chunk) {
    const int64_t tokens = std::min(chunk, N - t0);
    mm_into(logits.narrow(0, 0, tokens).narrow(1, 0, plan.logit_cols), x2.narrow(0, t0, tokens), rows_t);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bitcodes_forward_gemm", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      dispatch_bits_dtype(bits_dtype, [&](auto bits_tag) {
        using bits_t = decltype(bits_tag);
        const ThresholdArgs<scalar_t, acc_t, bits_t> args{
            logits.const_data_ptr<acc_t>(), plan.logit_stride, bias.const_data_ptr<acc_t>(),
            noise.defined() ? noise.const_data_ptr<acc_t>() : nullptr, t0, tokens, B, philox,
            bits.mutable_data_ptr<bits_t>(), training ? z.mutable_data_ptr<acc_t>() : nullptr,
            onehot.mutable_data_ptr<scalar_t>(), plan.onehot_stride};
        if (plan.pairs) {
          threshold<scalar_t, acc_t, bits_t, true>(args, training, draw_noise);
        } else {
          threshold<scalar_t, acc_t, bits_t, false>(args, training, draw_noise);
        }
      });
    });
    mm_into(y2.narrow(0, t0, tokens), onehot.narrow(0, 0, tokens).narrow(1, 0, 2 * B), cb);
  }
  return {y, bits, z};
}

namespace {

// One chunk's straight-through epilogue (and, for fp16, the scale it needs first).
template <typename scalar_t, typename acc_t, bool kPairs, bool kScaled>
void straight_through(const StraightThroughArgs<acc_t>& args, const EpilogueMatrix<scalar_t>& E, at::Tensor& block_max,
                      at::Tensor& r_max, acc_t* r32, at::Tensor& inv_scale) {
  const auto grid = elementwise_grid(args.tokens * args.B);
  if constexpr (kScaled) {
    r_max_kernel<acc_t, kPairs><<<grid, kEpilogueThreads, 0, current_stream()>>>(args,
                                                                                  block_max.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::amax_out(r_max, block_max.narrow(0, 0, grid.x), c10::IntArrayRef{0});
  }
  straight_through_kernel<scalar_t, acc_t, kPairs, kScaled><<<grid, kEpilogueThreads, 0, current_stream()>>>(
      args, E, kScaled ? r_max.const_data_ptr<acc_t>() : nullptr, r32,
      kScaled ? inv_scale.mutable_data_ptr<acc_t>() : nullptr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> backward(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& codebook,
                                            const at::Tensor& z, double temperature, bool euclidean) {
  const int64_t B = codebook.size(0) / 2, D = codebook.size(1), N = x.numel() / D;
  const auto acc_type = at::toOpMathType(x.scalar_type());
  auto dx = at::empty(x.sizes(), x.options());
  if (N == 0) return {dx, at::zeros_like(codebook)};

  const BackwardPlan plan(x.scalar_type(), B, D, euclidean);
  const int64_t chunk = std::min(plan.chunk, N);
  const auto acc_options = x.options().dtype(acc_type);
  const auto cb_acc = codebook.to(acc_type).contiguous();
  const auto rows_t = logit_rows(codebook, cb_acc, plan.pairs).t();
  const auto right = dx_rows(codebook, cb_acc, plan.pairs, B);
  auto u = at::empty({chunk, plan.logit_stride}, acc_options);
  // E's padding stays zero and its column B stays 1 (the row of S1 that sums g) for every chunk.
  auto E = at::zeros({chunk, plan.e_stride}, x.options());
  E.select(1, B).fill_(1);
  auto r32 = plan.r32_stride ? at::empty({chunk, B}, acc_options) : at::Tensor();
  auto dx_ws = plan.dx_stride ? at::empty({chunk, D}, acc_options) : at::Tensor();
  auto block_max = plan.scaled ? at::empty({ceil_div(chunk * B, kEpilogueThreads)}, acc_options) : at::Tensor();
  auto r_max = at::empty({}, acc_options), inv_scale = at::ones({1}, acc_options);
  auto S1 = at::zeros({B + 1, D}, acc_options), S2 = at::zeros({B, D}, acc_options);
  auto r_sum = at::zeros({B}, acc_options);
  const auto g2 = grad_y.view({N, D}), x2 = x.view({N, D});
  auto dx2 = dx.view({N, D});

  for (int64_t t0 = 0; t0 < N; t0 += chunk) {
    const int64_t tokens = std::min(chunk, N - t0);
    const auto g_c = g2.narrow(0, t0, tokens), x_c = x2.narrow(0, t0, tokens);
    mm_into(u.narrow(0, 0, tokens).narrow(1, 0, plan.logit_cols), g_c, rows_t);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bitcodes_backward_gemm", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const StraightThroughArgs<acc_t> args{u.const_data_ptr<acc_t>(), plan.logit_stride, z.const_data_ptr<acc_t>(),
                                            t0, tokens, B, acc_t(temperature)};
      const EpilogueMatrix<scalar_t> matrix{E.mutable_data_ptr<scalar_t>(), plan.e_stride, plan.r_offset,
                                            plan.part_stride};
      acc_t* r32_data = r32.defined() ? r32.mutable_data_ptr<acc_t>() : nullptr;
      if (plan.scaled) {
        straight_through<scalar_t, acc_t, true, true>(args, matrix, block_max, r_max, r32_data, inv_scale);
      } else if (plan.pairs) {
        straight_through<scalar_t, acc_t, true, false>(args, matrix, block_max, r_max, r32_data, inv_scale);
      } else {
        straight_through<scalar_t, acc_t, false, false>(args, matrix, block_max, r_max, r32_data, inv_scale);
      }
    });
    const auto E_c = E.narrow(0, 0, tokens);
    const auto dx_block = E_c.narrow(1, plan.r_offset, plan.dx_parts * plan.part_stride);
    if (plan.scaled) {
      auto ws = dx_ws.narrow(0, 0, tokens);
      mm_into(ws, dx_block, right);
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bitcodes_backward_gemm_dx", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        scale_out_kernel<scalar_t, acc_t><<<elementwise_grid(tokens * D), kEpilogueThreads, 0, current_stream()>>>(
            ws.const_data_ptr<acc_t>(), tokens * D, inv_scale.const_data_ptr<acc_t>(),
            dx2.narrow(0, t0, tokens).mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    } else {
      mm_into(dx2.narrow(0, t0, tokens), dx_block, right);
    }
    mm_accumulate(S1, E_c.narrow(1, 0, B + 1).t(), g_c);
    auto parts = at::empty({plan.parts * plan.part_stride, D}, acc_options);
    mm_into(parts, E_c.narrow(1, plan.r_offset, plan.parts * plan.part_stride).t(), x_c);
    auto r_x = parts.narrow(0, 0, B);
    if (plan.parts == 2) r_x = r_x + parts.narrow(0, plan.part_stride, B);
    S2.add_(plan.scaled ? r_x * inv_scale : r_x);
    if (euclidean) {
      r_sum.add_(r32.defined() ? r32.narrow(0, 0, tokens).sum(0) : E_c.narrow(1, plan.r_offset, B).sum(0));
    }
  }
  const auto S = S1.narrow(0, 0, B) + S2;
  return {dx, assemble_codebook_grad(S, S1.select(0, B), r_sum, cb_acc, euclidean, codebook.scalar_type())};
}

}  // namespace bitcodes_ext::cuda::gemm
