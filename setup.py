"""Build hook for the one compiled module, provenance/_fastrecords.c (the records check).

Optional: where no C compiler is found the build goes on without it and the pure-Python
checks run instead (provenance/fastrecords.py), same answers, slower. Everything else about
the package is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "provenance._fastrecords",
            ["provenance/_fastrecords.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
            optional=True,
        )
    ]
)
