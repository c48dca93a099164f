// Column panels: a matrix cut along its columns into panels three vectors wide, each panel
// stored contiguously. The widest register blocks of microkernels.h read three vectors of a
// row at a time; in a row-major matrix with a long row stride (W with D = 512 or 1024 features,
// a transposed codebook with 8192 codes) the rows such a block reads fall into the same few L1
// sets, while a contiguous panel streams from L1 for a whole tile of tokens.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cpu/vec/vec.h>

#include <cstdint>

namespace bitcodes_ext::cpu {

// Columns per panel: three vectors of the accumulation type.
template <typename acc_t>
constexpr int64_t panel_width() {
  return 3 * at::vec::Vectorized<acc_t>::size();
}

// (rows, cols) -> (ceil(cols / P), rows, P), zero past cols; P = panel_width() of its dtype.
inline at::Tensor column_panels(const at::Tensor& m) {
  int64_t P = 0;
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "bitcodes_panel_width", [&] { P = panel_width<scalar_t>(); });
  const int64_t rows = m.size(0), cols = m.size(1), panels = (cols + P - 1) / P;
  auto padded = at::zeros({rows, panels * P}, m.options());
  padded.narrow(1, 0, cols).copy_(m);
  return padded.view({rows, panels, P}).permute({1, 0, 2}).contiguous();
}

}  // namespace bitcodes_ext::cpu
