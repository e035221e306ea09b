"""Build hook for the compiled modules: provenance/_fastrecords.c (the records check, frame
checksums, leaf hashes and Merkle roots; provenance/_sha256_lanes.h hashes eight messages at a
time with AVX2) and proxy/records/_spoolmap.c (the serving process's spool writer: records framed
straight into a memory-mapped segment). They need a C compiler, OpenSSL's and zlib's headers
(Debian: gcc, libssl-dev, zlib1g-dev).

Optional: where it can't be built the build goes on without it and the pure-Python
checks run instead (provenance/fastrecords.py), same answers, slower. Everything else about
the package is in pyproject.toml.
"""

from setuptools import Extension, setup

COMPILE_ARGS = ["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]

setup(
    ext_modules=[
        Extension(
            "provenance._fastrecords",
            ["provenance/_fastrecords.c"],
            # eight-lane SHA-256 and the SHA extensions, included by the .c
            depends=[
                "provenance/_sha256_lanes.h",
                "provenance/_sha256_ni.h",
                "provenance/_crc32_clmul.h",
            ],
            # OpenSSL's SHA-256, as Python's hashlib uses; zlib's CRC-32 for spool frames
            libraries=["crypto", "z"],
            extra_compile_args=COMPILE_ARGS,
            optional=True,
        ),
        Extension(
            "proxy.records._spoolmap",
            ["proxy/records/_spoolmap.c"],
            depends=["provenance/_crc32_clmul.h"],
            libraries=["z"],
            extra_compile_args=COMPILE_ARGS,
            optional=True,
        ),
    ]
)
