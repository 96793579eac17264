"""keysync: lip synchronisation (visual dubbing) with KeySync.

``from keysync import KeySyncPipeline, DubOptions``: loaded on first use, so ``keysync --help`` stays fast.
"""

__version__ = "0.1.0"
__all__ = ["DubOptions", "DubOutput", "KeySyncPipeline"]


def __getattr__(name):
    if name in __all__:
        from .pipeline import dub

        return getattr(dub, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
