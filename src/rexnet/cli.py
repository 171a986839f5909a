"""The ``rexnet`` command: each package adds its own subcommands; ``main`` runs the one asked for
and turns user errors into one line and an exit code."""
from __future__ import annotations

import argparse
import sys

from . import __version__

DESCRIPTION = ("ReXNet (Han et al., CVPR 2021, 'Rethinking Channel Dimensions for Efficient Model Design'): "
               "the model zoo, the rank study (Section 3), the channel-configuration search (Section 4), "
               "training, evaluation, detection, benchmarks and export. Start with `rexnet demo`.")


def build_parser() -> argparse.ArgumentParser:
    """The ``rexnet`` parser: each package adds its subcommands, in the order ``rexnet --help`` lists them."""
    parser = argparse.ArgumentParser(prog="rexnet", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"rexnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    from .bench.cli import add_bench_commands
    from .detection.cli import add_detect_commands
    from .rank.cli import add_rank_commands
    from .search.cli import add_search_commands
    from .train.cli import add_train_commands
    from .zoo_cli import add_zoo_commands

    add_zoo_commands(sub)
    add_train_commands(sub)
    add_rank_commands(sub)
    add_search_commands(sub)
    add_bench_commands(sub)   # and export
    add_detect_commands(sub)

    from .design.cli import add_design_command

    add_design_command(sub)

    from .experiments.cli import add_experiment_commands
    from .search.experiments import catalogue

    add_experiment_commands(sub, catalogue())

    from .demo import add_demo_command

    add_demo_command(sub)
    return parser


def _command_name(args: argparse.Namespace) -> str:
    """``train``, ``detect train``, ``search run``: the command and, for command groups, the
    subcommand (their ``add_subparsers`` dest is ``<command>_command``)."""
    sub = getattr(args, f"{args.command.replace('-', '_')}_command", None)
    return f"{args.command} {sub}" if sub else args.command


def main(argv: list[str] | None = None) -> int:
    if argv is None:   # the process's own command line: commands that train re-exec with tcmalloc
        from .alloc import reexec_if_wanted

        reexec_if_wanted(sys.argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt as e:
        stop_code = getattr(e, "exit_code", None)  # TrainingStopped: SIGINT/SIGTERM after a finished step
        if stop_code is not None:
            from .train.cli import main_process

            if main_process():   # every rank stops at the same step; one line says so
                print(f"rexnet {_command_name(args)}: {e}", file=sys.stderr)
            return stop_code
        print(f"rexnet {args.command}: interrupted; finished work is kept (train: --resume continues)",
              file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as e:  # user errors: one clear line, no traceback
        print(f"rexnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if type(e).__name__ != "TrainingDiverged":
            raise
        print(f"rexnet {args.command}: error: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
