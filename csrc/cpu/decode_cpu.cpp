// CPU decode (from_bits) and its codebook gradient: y = sum_i c[2i + bit_i].
#include "../checks.h"
#include "codebook_grad.h"
#include "lookup.h"
#include "microkernels.h"
#include "output_memory.h"
#include "prepared_codebook.h"
#include "tiles.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <vector>

namespace bitcodes_ext::cpu {
namespace {

// bits of any integer type -> contiguous uint8, checking that every value is 0 or 1.
at::Tensor checked_bits(const at::Tensor& bits_in, const char* op) {
  auto bits = bits_in.contiguous();
  if (bits.scalar_type() == at::kBool) return bits.view(at::kByte);
  auto out = at::empty(bits.sizes(), bits.options().dtype(at::kByte));
  std::atomic<bool> invalid{false};
  // AT_DISPATCH_INTEGRAL_TYPES covers uint8 and the signed types; wider unsigned ones are read as
  // int64, where values past 2^63 turn negative and are caught as invalid.
  const auto t = bits.scalar_type();
  const auto src = t == at::kByte || at::isSignedType(t) ? bits : bits.to(at::kLong);
  AT_DISPATCH_INTEGRAL_TYPES(src.scalar_type(), "bitcodes_checked_bits", [&] {
    const scalar_t* in = src.const_data_ptr<scalar_t>();
    uint8_t* dst = out.mutable_data_ptr<uint8_t>();
    at::parallel_for(0, src.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
      bool bad = false;
      for (int64_t k = begin; k < end; ++k) {
        bad |= in[k] != 0 && in[k] != 1;
        dst[k] = in[k] != 0;
      }
      if (bad) invalid = true;
    });
  });
  TORCH_CHECK_VALUE(!invalid, op, ": bits must contain only 0 and 1");
  return out;
}

template <typename scalar_t, typename acc_t>
void decode_kernel(const uint8_t* bits, int64_t N, int64_t B, int64_t D, const LookupTables& lut,
                   scalar_t* y) {
  at::parallel_for(0, num_tiles(N), 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> y_acc(conversion_buffer_size<scalar_t, acc_t>(kTileTokens * D));
    std::vector<uint8_t> codes(kTileTokens * lut.groups);
    std::vector<int64_t> offsets;
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t t0 = tile * kTileTokens, nt = std::min(kTileTokens, N - t0);
      for (int64_t t = 0; t < nt; ++t)
        pack_codes(bits + (t0 + t) * B, B, lut, codes.data() + t * lut.groups);
      lookup_tile(lut, codes.data(), nt, y + t0 * D, y_acc.data(), offsets);
    }
  });
}

// S += bits^T g and sum_t g, per chunk of tokens.
template <typename scalar_t, typename acc_t>
void decode_backward_kernel(const scalar_t* g, const uint8_t* bits8, int64_t N, int64_t B,
                            int64_t Bp, int64_t D, acc_t* partials, int64_t chunks) {
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> g_acc(conversion_buffer_size<scalar_t, acc_t>(kTileTokens * D));
    std::vector<acc_t> bits(kTileTokens * Bp, acc_t(0)), panel(kTileTokens * panel_width<acc_t>());
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      for_each_chunk_tile(chunk, chunks, N, partials, Bp, D, [&](PartialSums<acc_t>& sums, int64_t t0, int64_t nt) {
        const acc_t* ga = tile_as_acc(g + t0 * D, nt * D, g_acc.data());
        for (int64_t t = 0; t < nt; ++t)
          for (int64_t i = 0; i < B; ++i) bits[t * Bp + i] = acc_t(bits8[(t0 + t) * B + i]);
        accumulate_outer(bits.data(), nt, Bp, Bp, ga, D, sums.S, panel.data());
        accumulate_columns(ga, nt, D, sums.grad_sum);
      });
    }
  });
}

at::Tensor decode_cpu(const at::Tensor& bits_in, const at::Tensor& codebook) {
  constexpr const char* op = "bitcodes_ext::decode";
  check_codebook(codebook, op);
  check_bits(bits_in, codebook, op);
  const auto bits = checked_bits(bits_in, op);
  const int64_t B = codebook.size(0) / 2, D = codebook.size(1), N = bits.numel() / B;
  const auto shape = with_last_dim(bits, D);
  auto y = empty_output(shape, codebook.options());
  if (N == 0) return y;
  const auto cb = prepare_codebook(codebook, at::toOpMathType(codebook.scalar_type()), false, false);
  const auto lut = make_lookup_tables(cb.codebook, N);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, codebook.scalar_type(), "bitcodes_decode_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    decode_kernel<scalar_t, acc_t>(bits.const_data_ptr<uint8_t>(), N, B, D, lut, y.mutable_data_ptr<scalar_t>());
  });
  return y;
}

at::Tensor decode_backward_cpu(const at::Tensor& grad_y_in, const at::Tensor& bits_in,
                               const at::Tensor& codebook) {
  constexpr const char* op = "bitcodes_ext::decode_backward";
  check_decode_backward(grad_y_in, bits_in, codebook, op);
  const int64_t B = codebook.size(0) / 2, D = codebook.size(1);
  const auto bits = checked_bits(bits_in, op);
  const auto grad_y = grad_y_in.contiguous();
  const int64_t N = bits.numel() / B;
  const auto acc_type = at::toOpMathType(codebook.scalar_type());
  const auto cb = prepare_codebook(codebook, acc_type, false, false);
  auto partials = make_partials(N, cb, codebook.options().dtype(acc_type));
  const int64_t chunks = partials.size(0);
  if (N > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, codebook.scalar_type(), "bitcodes_decode_backward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      decode_backward_kernel<scalar_t, acc_t>(grad_y.const_data_ptr<scalar_t>(), bits.const_data_ptr<uint8_t>(),
                                              N, B, cb.padded_bits, D, partials.mutable_data_ptr<acc_t>(), chunks);
    });
  }
  return finish_codebook_grad(partials, cb, /*euclidean=*/false, codebook.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(bitcodes_ext, CPU, m) {
  m.impl("decode", &decode_cpu);
  m.impl("decode_backward", &decode_backward_cpu);
}

}  // namespace bitcodes_ext::cpu
