"""The CPU capabilities this CPU supports, lowest first, as the one probe says
(bitcodes_ext._C, read through backend_info()); the last is the best. The Makefile and the tools
(tools/mutants.py, tools/cmake_args.py) ask here rather than guess from torch or /proc/cpuinfo.

    python tools/cpu_capabilities.py          # e.g. DEFAULT AVX2 AVX512
    python tools/cpu_capabilities.py --best   # e.g. AVX512

Fails, naming why, where the compiled kernels did not load (the probe is compiled too).
"""

import sys


def supported():
    import bitcodes_ext

    info = bitcodes_ext.backend_info()
    if not info["cpu_kernels"]:
        raise SystemExit(f"cpu_capabilities: the compiled CPU kernels did not load: {info['load_error']}")
    return info["cpu_capabilities_supported"]


def best():
    return supported()[-1]


if __name__ == "__main__":
    print(best() if sys.argv[1:] == ["--best"] else " ".join(supported()))
