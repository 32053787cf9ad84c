"""The one compiled module, ``algotrade.adapters._speedups``: the collector's hot path in C.

Everything else is in pyproject.toml. The extension is optional: without a C compiler the
build goes on and algotrade runs its pure-Python code instead (slower, same results; see
``docs/scaling.md``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "algotrade.adapters._speedups",
            sources=["src/algotrade/adapters/_speedups.c", "src/algotrade/adapters/_history.c"],
            depends=["src/algotrade/adapters/_history.h"],
            # the history kernels repeat Python's float operations one by one: no fused
            # multiply-add may merge them
            extra_compile_args=["-ffp-contract=off"],
            optional=True,
        )
    ]
)
