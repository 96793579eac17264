"""``keysync batch JOBS -o OUT_DIR``: dub every row of a manifest (CSV or JSONL) on worker processes or a Ray
cluster; re-running the same command skips finished jobs and retries the rest."""

from __future__ import annotations

import argparse

from ..constants import DTYPES, FP8_HELP, FP8_MODES


def register(subparsers) -> None:
    p = subparsers.add_parser("batch", help="dub many videos listed in a manifest, resumably", description=__doc__)
    p.add_argument("jobs", metavar="JOBS", help="manifest: .csv or .jsonl, one row per job with the columns video, audio, "
                   "optional output (a name under OUT_DIR) and any keysync dub option (face-index, steps, seed, ...)")
    p.add_argument("-o", "--out-dir", required=True, help="folder for the outputs (created if missing)")
    p.add_argument("--run-dir", help="folder for the journal and the workers' unfinished files (default: OUT_DIR.keysync-batch "
                   "beside OUT_DIR; on the same filesystem)")
    p.add_argument("--model", help="model folder for rows without a model column (default: the small model shipped in the package)")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--compile", action="store_true", help="each worker compiles the networks once with torch.compile "
                   "(as keysync dub --compile; pays when a worker dubs many or long videos)")
    p.add_argument("--fp8", choices=FP8_MODES, help="as keysync dub --fp8, for every job: " + FP8_HELP)
    p.add_argument("--workers", type=int, help="worker processes, each loading the model once (default: one per GPU, else 1; "
                   "with --ray: one per GPU of the cluster, else one per --worker-cpus CPUs)")
    p.add_argument("--devices", help="GPU indices for the local workers, such as 0,1 (round robin), or cpu (default: every GPU, else cpu)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run the workers as actors on a Ray cluster: auto (the one running on this machine), an address, or "
                   "nothing (RAY_ADDRESS, else a new local one); needs pip install \"keysync[ray]\"")
    p.add_argument("--worker-cpus", type=int, default=1, help="CPUs per Ray actor when the cluster has no GPU (default 1)")
    p.add_argument("--retries", type=int, default=1, help="tries again per job after a worker died or an unexpected error "
                   "(a problem with the input is not retried within a run; a re-run retries every failed job) (default 1)")
    p.add_argument("--split-long", type=float, metavar="S", help="dub a video longer than S seconds in pieces of at most "
                   "about S seconds (whole sampling windows of 6.76 s), on several workers at once, and join them: the joined "
                   "output equals an unsplit dub's frames")
    p.add_argument("--skip-invalid", action="store_true", help="dub the valid rows when some are not (they are listed and count as failed)")
    p.add_argument("--overwrite", action="store_true", help="dub every job again, replacing outputs already in OUT_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars; only warnings and errors")
    p.set_defaults(func=run_batch_command)


def dub_rules():
    """``keysync dub``'s parser and checks, which make a manifest row mean what the same dub command means."""
    from ..pipeline import commands as dub
    from .manifest import DubRules, RowParser

    subparsers = RowParser(prog="keysync").add_subparsers()
    dub.register(subparsers)

    def check(args: argparse.Namespace):
        dub.check_dub_request(args)
        return dub.check_occluder_clicks(args)

    return DubRules(subparsers.choices["dub"], check, dub.check_device)


def run_batch_command(args: argparse.Namespace) -> int:
    from .run import BatchRequest, run_batch

    summary = run_batch(BatchRequest(
        manifest=args.jobs, out_dir=args.out_dir, run_dir=args.run_dir, model=args.model, dtype=args.dtype, compile=args.compile, fp8=args.fp8,
        workers=args.workers, devices=args.devices, ray=args.ray, worker_cpus=args.worker_cpus, retries=args.retries, split_long=args.split_long,
        skip_invalid=args.skip_invalid, overwrite=args.overwrite, progress=not args.quiet,
    ), dub_rules())
    summary.print()
    return 1 if summary.failed else 0
