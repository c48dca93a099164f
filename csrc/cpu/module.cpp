// The Python extension module bitcodes_ext._cpu_<capability> (setup.py compiles csrc/cpu/ once
// per capability). Importing it registers the CPU kernels of the other sources; the module
// itself only says which capability it was built for. Not part of the CMake library.
#include <pybind11/pybind11.h>

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.attr("cpu_capability") = BITCODES_MODULE_CPU_CAPABILITY; }
