// The Python extension module bitcodes_ext._cpu_<capability> (setup.py compiles csrc/cpu/ once
// per capability). Importing it registers the CPU kernels of the other sources; the module
// itself says which capability it was built for and reaches the output cache of its kernels.
// Not part of the CMake library.
#include "output_memory.h"

#include <pybind11/pybind11.h>

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace cpu = bitcodes_ext::cpu;
  m.attr("cpu_capability") = BITCODES_MODULE_CPU_CAPABILITY;
  m.def("cached_output_bytes", &cpu::cached_output_bytes);
  m.def("output_cache_limit_bytes", &cpu::output_cache_limit_bytes);
  m.def("release_cached_outputs", &cpu::release_cached_outputs);
}
