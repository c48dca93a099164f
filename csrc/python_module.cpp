// The Python extension module bitcodes_ext._C. Importing it loads the op registrations of
// the other sources; the module itself only says what the build targets.
#include <pybind11/pybind11.h>

PYBIND11_MODULE(_C, m) {
#ifdef BITCODES_CPU_CAPABILITY
  m.attr("cpu_capability") = BITCODES_CPU_CAPABILITY;
#else
  m.attr("cpu_capability") = "DEFAULT";
#endif
}
