"""The offline lip-sync benchmark on the synthetic world.

Public API:

- ``LipSyncTask`` / ``MethodOutput`` / ``LipSyncMethod``: the method protocol, ``method(task) -> output``
  (see ``keysync.bench.methods``); ``register_method(name, factory)`` makes ``keysync bench --method
  NAME`` find a method; ``CopyMethod`` and ``OracleMethod`` are the two bounds.
- ``run_benchmark(method, records, work_dir)`` -> ``BenchResult`` (``.summary`` {mode: {metric: value}},
  ``.rows`` per clip and mode);
  ``benchmark_data(folder, n_clips, seed, size)`` renders held-out clips to run it on.
- ``LoadedReader().read(frames, landmarks)`` -> mouth parameters (T, 5) read from frames by the shipped
  mouth reader; ``keysync.bench.metrics`` holds the metric definitions (PSNR, SSIM, LipLeak and jitter are
  ``keysync.eval``'s, re-exported; LipLeak's "speaking" rule is documented in ``keysync.eval.lipleak``).
"""

import importlib

# Imported on first use, so that ``keysync --help`` does not load torch.
_EXPORTS = {
    **dict.fromkeys(
        ["METHODS", "CopyMethod", "LipSyncMethod", "LipSyncTask", "MethodOutput", "OracleMethod", "get_method", "register_method"],
        ".methods",
    ),
    "LoadedReader": ".mouth_reader",
    **dict.fromkeys(["MODES", "BenchResult", "benchmark_data", "run_benchmark"], ".runner"),
}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)


__all__ = [
    "METHODS",
    "MODES",
    "BenchResult",
    "CopyMethod",
    "LipSyncMethod",
    "LipSyncTask",
    "LoadedReader",
    "MethodOutput",
    "OracleMethod",
    "benchmark_data",
    "get_method",
    "register_method",
    "run_benchmark",
]
