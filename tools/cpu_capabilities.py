"""The CPU capabilities this CPU supports, lowest first, as the one probe says
(bitcodes_ext._C, read through backend_info()); the last is the best (the highest). The one the
package loads by default can be lower (bitcodes_ext/_extension.py, PREFERRED_CAPABILITY). The
Makefile and the tools (tools/mutants.py, tools/cmake_args.py) ask here rather than guess from
torch or /proc/cpuinfo.

    python tools/cpu_capabilities.py            # e.g. DEFAULT AVX2 AVX512
    python tools/cpu_capabilities.py --best     # e.g. AVX512
    python tools/cpu_capabilities.py --default  # what `import bitcodes_ext` loads here, e.g. AVX2

Fails, naming why, where the compiled kernels did not load (the probe is compiled too).
"""

import os
import sys


def supported():
    import bitcodes_ext

    info = bitcodes_ext.backend_info()
    if not info["cpu_kernels"]:
        raise SystemExit(f"cpu_capabilities: the compiled CPU kernels did not load: {info['load_error']}")
    return info["cpu_capabilities_supported"]


def best():
    return supported()[-1]


def default():
    """The capability loaded without BITCODES_CPU_CAPABILITY (this process must not have it set)."""
    import bitcodes_ext

    return bitcodes_ext.backend_info()["cpu_capability"]


if __name__ == "__main__":
    if sys.argv[1:] == ["--default"]:
        os.environ.pop("BITCODES_CPU_CAPABILITY", None)  # before the package is imported
        supported()  # fails, naming why, where the kernels did not load
        print(default())
    else:
        print(best() if sys.argv[1:] == ["--best"] else " ".join(supported()))
