"""``rexnet search run|status|recover|analyze|presets|references|sample``: argument parsing over
:mod:`rexnet.search`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..flags import add_dataclass_flags, dataclass_overrides
from .run import SearchSettings

__all__ = ["add_search_commands", "cmd_search_run", "cmd_search_status", "cmd_search_recover", "cmd_search_analyze",
           "cmd_search_references", "cmd_search_sample"]


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"


_HELPS = dict(preset="smoke | d18_30m_cifar10 | ... (`rexnet search presets`)",
              data="cifar10 | cifar100 | image tree | zip (default: the preset's)",
              trials="sampled models (references come on top)", repeats="seeds per model",
              train_subset="training images (0 = all)", val_subset="test images (0 = all)",
              early_stop_patience="epochs without improvement (0 = off)",
              seed="sampling seed and first training seed",
              rank_images="images for the final-feature nuclear norm (0 = skip)", workers="trials at once",
              cpus_per_trial="Ray resources per trial", gpus_per_trial="Ray resources per trial (e.g. 0.25)",
              device="auto | cpu | cuda", amp="auto | off | bf16 | fp16",
              ray="run trials as Ray tasks on a local Ray instance started (and stopped) here",
              ray_address="join a running Ray cluster, e.g. auto or ray://head:10001",
              skip_bad_images="skip and count unreadable images (in the data check and every trial) "
                              "instead of stopping; not part of the protocol",
              retry="run failed trials again (default; --no-retry: leave them failed)",
              max_attempts="retry a failed trial only while it has had fewer attempts (0 = no limit)",
              stop_after_failures="stop the search when this many trials in a row fail with the same "
                                  "error (0 = never)")


def cmd_search_run(args: argparse.Namespace) -> int:
    from ..io import check_writable
    from ..trials import status
    from .run import run_search

    check_writable(args.out)  # before any trial
    counts = run_search(args.out, SearchSettings(**dataclass_overrides(args, SearchSettings)))
    st = status(args.out)
    print(f"{st['done']}/{st['total']} trials done, {st['failed']} failed"
          + (f"; best {st['best']['kind']} {st['best']['spec_hash']}: {st['best']['mean_val_top1']:.2f}%"
             if st["best"] else ""))
    if args.analyze and counts["done"]:
        from .report import analyze
        res = analyze([args.out], args.out + "/report")
        print(f"wrote {res.get('report', args.out + '/report/report.md')}")
    return 0 if counts["failed"] == 0 else 1


def cmd_search_recover(args: argparse.Namespace) -> int:
    from .run import recover

    recover(args.out)
    return 0


def cmd_search_status(args: argparse.Namespace) -> int:
    from ..trials import status

    st = status(args.out)
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    print(f"search {st['search']}: {st['done']}/{st['total']} trials done, {st['running']} running, "
          f"{st['pending']} pending, {st['failed']} failed")
    if st["mean_trial_s"]:
        print(f"mean trial {st['mean_trial_s']:.0f}s; ETA {_hms(st['eta_s'])}")
    if st["best"]:
        b = st["best"]
        print(f"best so far: {b['kind']} {b['spec_hash']} {b['mean_val_top1']:.2f}% over {b['repeats']} "
              f"repeat(s), {b['macs'] / 1e6:.1f} MMACs, {b['params'] / 1e6:.3f} M params, widths "
              f"{'/'.join(map(str, b['widths']))}")
    return 0


def cmd_search_analyze(args: argparse.Namespace) -> int:
    from ..io import check_writable
    from .report import analyze

    missing = [d for d in args.dirs if not Path(d).exists()]
    if missing:  # before the output check, which would create FIRST_DIR/report
        raise FileNotFoundError(f"no search in {missing[0]}: no such folder")
    out = args.out or (args.dirs[0].rstrip("/") + "/report")
    check_writable(out)  # before the searches are read
    res = analyze(args.dirs, out)
    print(f"wrote {res.get('report', out + '/report.md')}")
    return 0


def cmd_search_presets(args: argparse.Namespace) -> int:
    from ..tables import format_table
    from .space import PRESETS

    rows = [dict(preset=name, data=p.data, depth=p.space.depth,
                 mmacs=f"{p.space.lower_macs / 1e6:.1f}-{p.space.macs_max / 1e6:.0f}",
                 mparams=_bounds(p.space.params_min, p.space.params_max), pen=p.space.pen_chs,
                 trials=p.trials, epochs=p.epochs, repeats=p.repeats,
                 subset=f"{p.train_subset or 'all'}/{p.val_subset or 'all'}")
            for name, p in PRESETS.items()]
    print(format_table(rows))
    return 0


def _bounds(lo: float | None, hi: float | None) -> str:
    """Params bounds in millions, e.g. ``0.240-0.400`` (``-`` for an open end)."""
    return "-".join("" if v is None else f"{v / 1e6:.3f}" for v in (lo, hi)) if lo or hi else "none"


def _candidate_record(c) -> dict:
    return dict(kind=c.kind, family=c.family, spec_hash=c.hash, macs=c.macs, params=c.params,
                widths=list(c.widths), params_of_f=c.params_of_f)


def _space_record(space) -> dict:
    return dict(preset=space.name, depth=space.depth, macs_bounds=[space.lower_macs, space.macs_max],
                params_bounds=[space.params_min, space.params_max])


def _print_candidates(space, cands, header: str) -> None:
    from ..tables import format_table

    print(f"{header}: depth {space.depth}, MACs {space.lower_macs / 1e6:.2f}-{space.macs_max / 1e6:.2f}M, "
          f"params {_bounds(space.params_min, space.params_max)}M")
    rows = [dict(kind=c.kind, family=c.family, mmacs=f"{c.macs / 1e6:.2f}", mparams=f"{c.params / 1e6:.3f}",
                 widths="/".join(map(str, c.widths)),
                 f=" ".join(f"{k}={v}" for k, v in c.params_of_f.items() if k not in ("knots", "levels")))
            for c in cands]
    print(format_table(rows))


def cmd_search_references(args: argparse.Namespace) -> int:
    from .space import get_preset

    space = get_preset(args.preset).space
    refs = space.references()
    if args.json:
        print(json.dumps(dict(**_space_record(space), macs_target=space.macs_target,
                              params_target=space.params_target,
                              references=[_candidate_record(c) for c in refs]), indent=2))
        return 0
    _print_candidates(space, refs, f"references of {space.name} at {space.macs_target / 1e6:.2f} MMACs and "
                                   f"{space.params_target / 1e6:.3f} M params")
    return 0


def cmd_search_sample(args: argparse.Namespace) -> int:
    from collections import Counter

    from .space import FAMILY_RATES, get_preset

    p = get_preset(args.preset)
    if args.n < 0:
        raise ValueError(f"-n must be >= 0, got {args.n}")
    seed = p.seed if args.seed is None else args.seed
    cands = p.space.samples(args.n, seed)
    if args.json:
        print(json.dumps(dict(**_space_record(p.space), seed=seed, family_rates=FAMILY_RATES,
                              candidates=[_candidate_record(c) for c in cands]), indent=2))
        return 0
    _print_candidates(p.space, cands, f"{len(cands)} samples of {p.space.name} (seed {seed})")
    counts = Counter(c.family for c in cands)
    print("families: " + ", ".join(f"{f} {counts[f]} (rate {r:.0%})" for f, r in FAMILY_RATES.items()))
    return 0


def add_search_commands(sub) -> None:
    s = sub.add_parser("search", help="the channel-configuration search of Section 4")
    ss = s.add_subparsers(dest="search_command", required=True)

    r = ss.add_parser("run", help="sample, train and record a search (rerun the same command to resume)")
    r.add_argument("--out", required=True, help="search directory (search.db, trials/, report/)")
    # every SearchSettings field is a flag; these two keep their --no- forms
    add_dataclass_flags(r, SearchSettings, skip=("channels_last", "progress"), helps=_HELPS)
    r.add_argument("--channels-last", dest="channels_last", action=argparse.BooleanOptionalAction, default=None)
    r.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    r.add_argument("--analyze", action="store_true", help="write OUT/report when the search ends")
    r.set_defaults(func=cmd_search_run)

    st = ss.add_parser("status", help="progress, ETA and the best model so far")
    st.add_argument("out")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_search_status)

    rc = ss.add_parser("recover", help="rebuild a damaged search.db from the trials' result.json files "
                                       "(the bad file is kept as search.db.bad-<time>)")
    rc.add_argument("out")
    rc.set_defaults(func=cmd_search_recover)

    a = ss.add_parser("analyze", help="the paper's analysis of one or more searches (report.md + figures)")
    a.add_argument("dirs", nargs="+")
    a.add_argument("--out", default=None, help="default: FIRST_DIR/report")
    a.set_defaults(func=cmd_search_analyze)

    p = ss.add_parser("presets", help="list the search presets")
    p.set_defaults(func=cmd_search_presets)

    rf = ss.add_parser("references", help="the linear and stage-wise references of a preset (equal MACs and "
                                          "params): kind, MACs, params, widths")
    rf.add_argument("--preset", required=True, help=_HELPS["preset"])
    rf.add_argument("--json", action="store_true",
                    help="print {preset, bounds, targets, references: [{kind, family, macs, params, widths, "
                         "params_of_f}]}")
    rf.set_defaults(func=cmd_search_references)

    sm = ss.add_parser("sample", help="the candidates a search of this preset would train (no training)")
    sm.add_argument("--preset", required=True, help=_HELPS["preset"])
    sm.add_argument("-n", type=int, default=10, help="how many candidates (default 10)")
    sm.add_argument("--seed", type=int, default=None, help="sampling seed (default: the preset's)")
    sm.add_argument("--json", action="store_true",
                    help="print {preset, bounds, seed, family_rates, candidates: [{kind, family, macs, params, "
                         "widths, params_of_f}]}")
    sm.set_defaults(func=cmd_search_sample)
