"""VirNucPro viral-read identification as a Dagster asset platform.

The domain modules (sequences, models, storage, results, samples, settings) import no Dagster;
`virnucpro_assets.pipeline` is the Dagster layer and `defs` is the code location.
"""

# `defs` is loaded on first access (PEP 562) so that the domain modules can be imported without
# Dagster's start-up cost; `__dir__` lists it so Dagster's module autodiscovery still finds it.


def __getattr__(name: str):
    if name == "defs":
        from virnucpro_assets.definitions import defs

        return defs
    raise AttributeError(f"module 'virnucpro_assets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return ["defs"]
