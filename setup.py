"""The one thing pyproject.toml cannot say: echo-load's optional compiled loop.

``optional=True``: where no C compiler is at hand, the build goes on without it
and echo-load runs its Python loop instead (it says which in every result).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "echoclients.load._hotloop",
            ["clients/load/_hotloop.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
