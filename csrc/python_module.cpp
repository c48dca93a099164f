// The Python extension module bitcodes_ext._C. Importing it loads the op schemas (bitcodes.cpp)
// and, in a CUDA build, the CUDA kernels; the CPU kernels live in one module per instruction
// set (cpu/module.cpp). This module says which of those this CPU can run. It is compiled
// without ISA flags, so it runs on any CPU.
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

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.def("supported_cpu_capabilities", &supported_cpu_capabilities,
        "The CPU capabilities this CPU can run, lowest first (DEFAULT on any CPU).");
  m.def("required_features", &required_features,
        "The CPU features each capability's build may use, as __builtin_cpu_supports names.");
}
