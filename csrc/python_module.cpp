// The Python extension module bitcodes_ext._C. Importing it loads the op registrations of
// the other sources; the module itself says what the build targets, and exposes the CUDA
// route rule and its cost model (csrc/cuda/route.h, plain C++) so that tests and benchmarks
// can compare predictions with measurements, on any build.
#include "cuda/route.h"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

namespace {

using bitcodes_ext::cuda::CudaOp;
using bitcodes_ext::cuda::Problem;
using bitcodes_ext::cuda::Route;

constexpr Route kRoutes[] = {Route::kCudaCores, Route::kGemm};

Problem problem(const std::string& op, const std::string& dtype, int64_t tokens, int64_t width, int64_t features,
                bool training, int64_t bits_bytes) {
  const std::pair<const char*, CudaOp> ops[] = {{"forward", CudaOp::kForward},
                                                {"backward", CudaOp::kBackward},
                                                {"decode", CudaOp::kDecode},
                                                {"decode_backward", CudaOp::kDecodeBackward},
                                                {"vq", CudaOp::kVq}};
  const std::pair<const char*, at::ScalarType> dtypes[] = {
      {"float32", at::kFloat}, {"float64", at::kDouble}, {"float16", at::kHalf}, {"bfloat16", at::kBFloat16}};
  Problem p{CudaOp::kForward, at::kFloat, tokens, width, features, training, bits_bytes};
  bool op_known = false, dtype_known = false;
  for (const auto& [name, value] : ops) {
    if (op != name) continue;
    p.op = value;
    op_known = true;
  }
  for (const auto& [name, value] : dtypes) {
    if (dtype != name) continue;
    p.dtype = value;
    dtype_known = true;
  }
  TORCH_CHECK_VALUE(op_known, "op must be forward, backward, decode, decode_backward or vq, got '", op, "'");
  TORCH_CHECK_VALUE(dtype_known, "dtype must be float32, float64, float16 or bfloat16, got '", dtype, "'");
  return p;
}

Route route_named(const std::string& name) {
  for (const Route route : kRoutes) {
    if (name == bitcodes_ext::cuda::route_name(route)) return route;
  }
  TORCH_CHECK_VALUE(false, "route must be one of cores, gemm, got '", name, "'");
  return Route::kCudaCores;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
#ifdef BITCODES_CPU_CAPABILITY
  m.attr("cpu_capability") = BITCODES_CPU_CAPABILITY;
#else
  m.attr("cpu_capability") = "DEFAULT";
#endif
#ifdef BITCODES_CUDA_ARCHS
  m.attr("cuda_archs") = BITCODES_CUDA_ARCHS;  // TORCH_CUDA_ARCH_LIST of the build, ';' as ','
#else
  m.attr("cuda_archs") = pybind11::none();
#endif
  m.def("cuda_routes", [] {
    std::vector<std::string> names;
    for (const Route route : kRoutes) names.emplace_back(bitcodes_ext::cuda::route_name(route));
    return names;
  });
  m.def("cuda_route", [](const std::string& op, const std::string& dtype, int64_t tokens, int64_t width,
                         int64_t features, bool training, int64_t bits_bytes) {
    return std::string(bitcodes_ext::cuda::route_name(
        bitcodes_ext::cuda::choose_route(problem(op, dtype, tokens, width, features, training, bits_bytes))));
  });
  m.def("cuda_predicted_ms", [](const std::string& route, const std::string& op, const std::string& dtype,
                                int64_t tokens, int64_t width, int64_t features, bool training, int64_t bits_bytes) {
    return 1e3 * bitcodes_ext::cuda::predicted_seconds(
                     route_named(route), problem(op, dtype, tokens, width, features, training, bits_bytes));
  });
}
