// CPU forward and training backward of bitcodes_ext::forward, fused per tile of tokens:
//   forward:  logits = x.W^T, bits = [logits + bias + noise > 0], y = overlapped sum (look-ups)
//   backward: u = g.W^T, r = p(1-p)u/tau, dx = r.W, partial dC += bits^T g + r^T x
#include "../bits_dtype.h"
#include "../checks.h"
#include "codebook_grad.h"
#include "lookup.h"
#include "microkernels.h"
#include "noise.h"
#include "output_memory.h"
#include "panels.h"
#include "prepared_codebook.h"
#include "tiles.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

namespace bitcodes_ext::cpu {
namespace {

template <typename scalar_t, typename acc_t, typename bits_t>
void forward_kernel(const scalar_t* x, int64_t N, int64_t D, const PreparedCodebook& cb,
                    const LookupTables& lut, const acc_t* noise, bool training, uint64_t seed,
                    scalar_t* y, bits_t* bits, acc_t* z) {
  const int64_t B = cb.num_bits, Bp = cb.padded_bits;
  const acc_t* wt = cb.wt.const_data_ptr<acc_t>();
  const acc_t* bias = cb.bias.const_data_ptr<acc_t>();
  const bool draw_noise = training && noise == nullptr;
  at::parallel_for(0, num_tiles(N), 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> x_acc(conversion_buffer_size<scalar_t, acc_t>(kTileTokens * D));
    std::vector<acc_t> y_acc(conversion_buffer_size<scalar_t, acc_t>(kTileTokens * D));
    std::vector<acc_t> logits(kTileTokens * Bp), drawn(draw_noise ? kTileTokens * B : 0);
    std::vector<uint8_t> codes(kTileTokens * lut.groups);
    std::vector<int64_t> offsets;
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t t0 = tile * kTileTokens, nt = std::min(kTileTokens, N - t0);
      const acc_t* xa = tile_as_acc(x + t0 * D, nt * D, x_acc.data());
      project_rows(xa, nt, D, wt, Bp, Bp, D, logits.data(), Bp);
      const acc_t* n = noise ? noise + t0 * B : nullptr;
      if (draw_noise) {
        logistic_noise(seed, t0, nt, B, drawn.data());
        n = drawn.data();
      }
      for (int64_t t = 0; t < nt; ++t) {
        threshold_token(logits.data() + t * Bp, bias, n ? n + t * B : nullptr, B, lut.group_bits,
                        bits + (t0 + t) * B, codes.data() + t * lut.groups, training ? z + (t0 + t) * B : nullptr);
      }
      lookup_tile(lut, codes.data(), nt, y + t0 * D, y_acc.data(), offsets);
    }
  });
}

template <typename scalar_t, typename acc_t>
void backward_kernel(const scalar_t* g, const scalar_t* x, const acc_t* z, int64_t N, int64_t D,
                     const PreparedCodebook& cb, const acc_t* w_panels, acc_t tau, scalar_t* dx,
                     acc_t* partials, int64_t chunks) {
  const int64_t B = cb.num_bits, Bp = cb.padded_bits;
  const acc_t* wt = cb.wt.const_data_ptr<acc_t>();
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> g_acc(conversion_buffer_size<scalar_t, acc_t>(kTileTokens * D));
    std::vector<acc_t> x_acc(conversion_buffer_size<scalar_t, acc_t>(kTileTokens * D));
    std::vector<acc_t> dx_acc(conversion_buffer_size<scalar_t, acc_t>(kTileTokens * D));
    std::vector<acc_t> u(kTileTokens * Bp), r(kTileTokens * Bp), bits(kTileTokens * Bp);
    std::vector<acc_t> panel(kTileTokens * panel_width<acc_t>());
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      for_each_chunk_tile(chunk, chunks, N, partials, Bp, D, [&](PartialSums<acc_t>& sums, int64_t t0, int64_t nt) {
        const acc_t* ga = tile_as_acc(g + t0 * D, nt * D, g_acc.data());
        const acc_t* xa = tile_as_acc(x + t0 * D, nt * D, x_acc.data());
        project_rows(ga, nt, D, wt, Bp, Bp, D, u.data(), Bp);
        for (int64_t t = 0; t < nt; ++t)
          straight_through_token(z + (t0 + t) * B, B, Bp, u.data() + t * Bp, tau, r.data() + t * Bp,
                                 bits.data() + t * Bp, sums.r_sum);
        acc_t* dxa = acc_destination(dx + t0 * D, dx_acc.data());
        combine_rows(r.data(), nt, Bp, Bp, w_panels, D, dxa, D);
        flush_to_output(dxa, dx + t0 * D, nt * D);
        accumulate_outer(bits.data(), nt, Bp, Bp, ga, D, sums.S, panel.data());
        accumulate_outer(r.data(), nt, Bp, Bp, xa, D, sums.S, panel.data());
        accumulate_columns(ga, nt, D, sums.grad_sum);
      });
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cpu(const at::Tensor& x_in,
                                                           const at::Tensor& codebook,
                                                           const std::optional<at::Tensor>& noise_in,
                                                           double temperature, bool training,
                                                           bool euclidean, at::ScalarType bits_dtype) {
  constexpr const char* op = "bitcodes_ext::forward";
  const auto noise = check_forward_and_convert_noise(x_in, codebook, noise_in, temperature, training, op);
  check_bits_dtype(bits_dtype, op);
  const int64_t B = codebook.size(0) / 2, D = codebook.size(1);
  const auto acc_type = at::toOpMathType(x_in.scalar_type());
  const auto x = x_in.contiguous();
  const int64_t N = x.numel() / D;
  auto y = empty_output(x.sizes(), x.options());
  auto bits = empty_output(with_last_dim(x, B), x.options().dtype(bits_dtype));
  auto z = empty_output(training ? with_last_dim(x, B) : std::vector<int64_t>{0}, x.options().dtype(acc_type));
  if (N == 0) return {y, bits, z};

  const auto cb = prepare_codebook(codebook, acc_type, euclidean, /*need_w=*/true);
  const auto lut = make_lookup_tables(cb.codebook, N);
  const uint64_t seed = training && !noise.defined() ? draw_philox_seed() : 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bitcodes_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_bits_dtype(bits_dtype, [&](auto bits_tag) {
      using bits_t = decltype(bits_tag);
      forward_kernel<scalar_t, acc_t>(
          x.const_data_ptr<scalar_t>(), N, D, cb, lut,
          noise.defined() ? noise.const_data_ptr<acc_t>() : nullptr, training, seed,
          y.mutable_data_ptr<scalar_t>(), bits.mutable_data_ptr<bits_t>(),
          training ? z.mutable_data_ptr<acc_t>() : nullptr);
    });
  });
  return {y, bits, z};
}

std::tuple<at::Tensor, at::Tensor> backward_cpu(const at::Tensor& grad_y_in, const at::Tensor& x_in,
                                                const at::Tensor& codebook, const at::Tensor& z_in,
                                                double temperature, bool euclidean) {
  constexpr const char* op = "bitcodes_ext::backward";
  check_backward(grad_y_in, x_in, codebook, z_in, temperature, op);
  const int64_t D = codebook.size(1);
  const auto acc_type = at::toOpMathType(x_in.scalar_type());

  const auto x = x_in.contiguous(), grad_y = grad_y_in.contiguous(), z = z_in.contiguous();
  const int64_t N = x.numel() / D;
  auto dx = empty_output(x.sizes(), x.options());
  const auto cb = prepare_codebook(codebook, acc_type, euclidean, /*need_w=*/true);
  const auto w_panels = column_panels(cb.w);  // for dx = r.W
  auto partials = make_partials(N, cb, x.options().dtype(acc_type));
  const int64_t chunks = partials.size(0);
  if (N > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bitcodes_backward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      backward_kernel<scalar_t, acc_t>(grad_y.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                       z.const_data_ptr<acc_t>(), N, D, cb, w_panels.const_data_ptr<acc_t>(),
                                       acc_t(temperature),
                                       dx.mutable_data_ptr<scalar_t>(), partials.mutable_data_ptr<acc_t>(),
                                       chunks);
    });
  }
  return {dx, finish_codebook_grad(partials, cb, euclidean, codebook.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(bitcodes_ext, CPU, m) {
  m.impl("forward", &forward_cpu);
  m.impl("backward", &backward_cpu);
}

}  // namespace bitcodes_ext::cpu
