// The Python extension module bitcodes_ext._C. Importing it loads the op schemas (bitcodes.cpp)
// and, in a CUDA build, the CUDA kernels; the CPU kernels live in one module per instruction
// set (cpu/module.cpp). This module says which of those this CPU can run. It is compiled
// without ISA flags, so it runs on any CPU. It also exposes the CUDA route rule and its cost
// model (csrc/cuda/route.h, plain C++), so that tests and benchmarks can compare predictions
// with measurements, on any build.
#include "cuda/route.h"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <map>
#include <string>
#include <vector>

namespace {

// The CPU features each capability's flags (setup.py's CPU_FLAGS) let the compiler emit.
// -mavx512f also enables AVX2, so AVX512 includes AVX2's features.
#define BITCODES_AVX2_FEATURES(X) X("avx2") X("fma") X("f16c")
#define BITCODES_AVX512_FEATURES(X) \
  BITCODES_AVX2_FEATURES(X) X("avx512f") X("avx512bw") X("avx512vl") X("avx512dq")

#define BITCODES_NAME(feature) feature,
std::map<std::string, std::vector<std::string>> required_features() {
  return {{"DEFAULT", {}},
          {"AVX2", {BITCODES_AVX2_FEATURES(BITCODES_NAME)}},
          {"AVX512", {BITCODES_AVX512_FEATURES(BITCODES_NAME)}}};
}

// The capabilities this CPU (and its OS, which must save the wider registers: libgcc's
// __builtin_cpu_supports checks that too) can run, lowest first.
std::vector<std::string> supported_cpu_capabilities() {
  std::vector<std::string> supported = {"DEFAULT"};
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
#define BITCODES_HAS(feature) &&__builtin_cpu_supports(feature)
  if (true BITCODES_AVX2_FEATURES(BITCODES_HAS)) supported.push_back("AVX2");
  if (true BITCODES_AVX512_FEATURES(BITCODES_HAS)) supported.push_back("AVX512");
#undef BITCODES_HAS
#endif
  return supported;
}

using bitcodes_ext::cuda::Problem;
using bitcodes_ext::cuda::Route;

Problem problem(const std::string& op, const std::string& dtype, int64_t tokens, int64_t width, int64_t features,
                bool training, int64_t bits_bytes) {
  const std::pair<const char*, at::ScalarType> dtypes[] = {
      {"float32", at::kFloat}, {"float64", at::kDouble}, {"float16", at::kHalf}, {"bfloat16", at::kBFloat16}};
  Problem p{bitcodes_ext::cuda::cuda_op_named(op), at::kFloat, tokens, width, features, training, bits_bytes};
  bool dtype_known = false;
  for (const auto& [name, value] : dtypes) {
    if (dtype != name) continue;
    p.dtype = value;
    dtype_known = true;
  }
  TORCH_CHECK_VALUE(dtype_known, "dtype must be float32, float64, float16 or bfloat16, got '", dtype, "'");
  return p;
}

Route route_named(const std::string& name) {
  for (const Route route : bitcodes_ext::cuda::kAllRoutes) {
    if (name == bitcodes_ext::cuda::route_name(route)) return route;
  }
  TORCH_CHECK_VALUE(false, "route must be one of cores, gemm, mma, got '", name, "'");
  return Route::kCores;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.def("supported_cpu_capabilities", &supported_cpu_capabilities,
        "The CPU capabilities this CPU can run, lowest first (DEFAULT on any CPU).");
  m.def("required_features", &required_features,
        "The CPU features each capability's build may use, as __builtin_cpu_supports names.");
#ifdef BITCODES_TORCH_VERSION
  m.attr("torch_version") = BITCODES_TORCH_VERSION;  // torch.__version__ of the build
#else
  m.attr("torch_version") = pybind11::none();
#endif
#ifdef BITCODES_CUDA_ARCHS
  m.attr("cuda_archs") = BITCODES_CUDA_ARCHS;  // TORCH_CUDA_ARCH_LIST of the build, ';' as ','
#else
  m.attr("cuda_archs") = pybind11::none();
#endif
  m.def("cuda_routes", [] {
    std::vector<std::string> names;
    for (const Route route : bitcodes_ext::cuda::kAllRoutes) names.emplace_back(bitcodes_ext::cuda::route_name(route));
    return names;
  });
  m.def("cuda_route", [](const std::string& op, const std::string& dtype, int64_t tokens, int64_t width,
                         int64_t features, bool training, int64_t bits_bytes) {
    return std::string(bitcodes_ext::cuda::route_name(
        bitcodes_ext::cuda::choose_route(problem(op, dtype, tokens, width, features, training, bits_bytes), /*major=*/9)));
  });
  m.def("cuda_predicted_ms", [](const std::string& route, const std::string& op, const std::string& dtype,
                                int64_t tokens, int64_t width, int64_t features, bool training, int64_t bits_bytes) {
    return 1e3 * bitcodes_ext::cuda::predicted_seconds(
                     route_named(route), problem(op, dtype, tokens, width, features, training, bits_bytes));
  });
}
