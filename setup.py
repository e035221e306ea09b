"""Build hook for the one compiled module, provenance/_fastrecords.c (the records check, leaf
hashes and Merkle roots; provenance/_sha256_lanes.h hashes eight messages at a time with AVX2).
It needs a C compiler and OpenSSL's headers (Debian: gcc, libssl-dev).

Optional: where it can't be built the build goes on without it and the pure-Python
checks run instead (provenance/fastrecords.py), same answers, slower. Everything else about
the package is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "provenance._fastrecords",
            ["provenance/_fastrecords.c"],
            # eight-lane SHA-256 and the SHA extensions, included by the .c
            depends=["provenance/_sha256_lanes.h", "provenance/_sha256_ni.h"],
            libraries=["crypto"],  # OpenSSL's SHA-256, as Python's hashlib uses
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
            optional=True,
        )
    ]
)
