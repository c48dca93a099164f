"""Fails unless this process loads the sanitized build of the tree it runs in (`make sanitize`):
bitcodes_ext from the current directory, with the CPU kernels of the capability given, linked
against ASan and UBSan. Without this, a sanitizer run could pass on the ordinary build.

    python -m tools.check_sanitized AVX512   # from the tree under test, as pytest imports it
"""

import os
import subprocess
import sys

import bitcodes_ext
from bitcodes_ext import _extension


def main(capability):
    package = os.path.dirname(os.path.realpath(bitcodes_ext.__file__))
    if package != os.path.join(os.path.realpath(os.getcwd()), "bitcodes_ext"):
        sys.exit(f"check_sanitized: bitcodes_ext was imported from {package}, not from {os.getcwd()}")
    info = bitcodes_ext.backend_info()
    if info["cpu_capability"] != capability:
        sys.exit(f"check_sanitized: loaded CPU capability {info['cpu_capability']}, expected {capability} ({info['load_error']})")
    for module in (_extension._C, sys.modules[_extension._cpu_module(capability)]):
        needed = subprocess.run(["readelf", "-d", module.__file__], capture_output=True, text=True, check=True).stdout
        for runtime in ("libasan", "libubsan"):
            if runtime not in needed:
                sys.exit(f"check_sanitized: {module.__file__} is not linked against {runtime}")
    print(f"check_sanitized: {capability} kernels from {package}, built with ASan and UBSan")


if __name__ == "__main__":
    main(sys.argv[1])
