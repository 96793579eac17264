"""Dubbing: planning, two-stage sampling on latents, and the end-to-end pipeline (``KeySyncPipeline``)."""


def __getattr__(name):
    if name in ("KeySyncPipeline", "DubOptions"):
        from . import dub

        return getattr(dub, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
