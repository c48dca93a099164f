// The CPU ops against a naive loop, through the dispatcher, without Python.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <cstdio>
#include <tuple>

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what);
    ++failures;
  }
}

// y = sum_i c[2i + bit_i], bit_i = [x . (c[2i+1] - c[2i]) > 0], in double.
std::tuple<at::Tensor, at::Tensor> naive_eval(const at::Tensor& x, const at::Tensor& c) {
  const int64_t N = x.size(0), D = x.size(1), B = c.size(0) / 2;
  auto xd = x.to(at::kDouble), cd = c.to(at::kDouble);
  auto y = at::zeros({N, D}, at::kDouble);
  auto bits = at::zeros({N, B}, at::kLong);
  auto xa = xd.accessor<double, 2>(), ca = cd.accessor<double, 2>();
  auto ya = y.accessor<double, 2>();
  auto ba = bits.accessor<int64_t, 2>();
  for (int64_t t = 0; t < N; ++t)
    for (int64_t i = 0; i < B; ++i) {
      double logit = 0;
      for (int64_t d = 0; d < D; ++d) logit += xa[t][d] * (ca[2 * i + 1][d] - ca[2 * i][d]);
      ba[t][i] = logit > 0;
      for (int64_t d = 0; d < D; ++d) ya[t][d] += ca[2 * i + ba[t][i]][d];
    }
  return {y, bits};
}

}  // namespace

int main() {
  auto forward = c10::Dispatcher::singleton()
                     .findSchemaOrThrow("bitcodes_ext::forward", "")
                     .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                         const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, double, bool, bool,
                         at::ScalarType)>();
  auto decode = c10::Dispatcher::singleton()
                    .findSchemaOrThrow("bitcodes_ext::decode", "")
                    .typed<at::Tensor(const at::Tensor&, const at::Tensor&)>();
  at::manual_seed(0);
  const int64_t shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {100, 33, 13}, {130, 64, 40}};
  for (const auto& s : shapes) {
    // float64 so that the naive loop and the kernel agree to the last bit on every bit.
    auto x = at::randn({s[0], s[1]}, at::kDouble);
    auto c = at::randn({2 * s[2], s[1]}, at::kDouble);
    auto [y, bits, z] = forward.call(x, c, std::nullopt, 1.0, false, false, at::kLong);
    auto [y_ref, bits_ref] = naive_eval(x, c);
    expect(at::equal(bits, bits_ref), "forward bits == naive bits");
    expect(at::allclose(y, y_ref, 1e-12, 1e-12), "forward y == naive y");
    expect(at::equal(decode.call(bits, c), y), "decode(bits) == forward y");
    for (const auto bits_dtype : {at::kByte, at::kBool}) {
      const auto narrow = std::get<1>(forward.call(x, c, std::nullopt, 1.0, false, false, bits_dtype));
      expect(narrow.scalar_type() == bits_dtype && at::equal(narrow.to(at::kLong), bits), "uint8/bool bits == int64 bits");
    }
    auto [y32, bits32, z32] = forward.call(x.to(at::kFloat), c.to(at::kFloat), std::nullopt, 1.0, false, false, at::kLong);
    expect(at::allclose(y32.to(at::kDouble), decode.call(bits32, c), 1e-5, 1e-5), "float32 y == sum of its codes");
  }
  bool threw = false;
  try {
    forward.call(at::randn({3, 4}), at::randn({6, 5}), std::nullopt, 1.0, false, false, at::kLong);
  } catch (const c10::Error&) {
    threw = true;
  }
  expect(threw, "a wrong feature size throws");
  std::printf("%s\n", failures == 0 ? "all CPU kernel checks passed" : "CPU kernel checks FAILED");
  return failures == 0 ? 0 : 1;
}
