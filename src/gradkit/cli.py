"""The ``gradkit`` command line.

``gradkit train``                 trains an MLP on the digits data (progress, plot, checkpoint);
``gradkit compare``               trains one MLP with softmax and each alternative, over seeds;
``gradkit bench``                 times gradkit against its peers, side by side;
``gradkit jacobian softmax 1 2``  prints a Jacobian;
``gradkit check all``             gradchecks every activation × loss pair;
``gradkit list``                  lists the registered functions.
"""

from __future__ import annotations

import argparse
import ast
import sys
from typing import Any, Sequence

import numpy as np

from . import __version__, activations, losses
from .compose import compose
from .gradcheck import gradcheck, random_target

__all__ = ["main"]


def _kwargs(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"gradkit: --set takes KEY=VALUE, got {pair!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _check_pairs(act_names: list[str], loss_names: list[str], seed: int) -> int:
    rng = np.random.default_rng(seed)
    header = f"{'activation':<22} {'loss':<16} {'path':<8} {'max abs err':>12} {'max rel err':>12}  result"
    print(header)
    print("-" * len(header))
    failures = 0
    skipped = []
    for a in act_names:
        for name in loss_names:
            act, loss = activations.get(a), losses.get(name)
            try:
                head = compose(act, loss)
            except ValueError:
                skipped.append(f"{a}+{name}")
                continue
            z = rng.standard_normal((3, 5)) * 1.5
            target = random_target(loss, z.shape, rng)
            if act.stochastic:  # one sample, held fixed while the derivatives are checked
                act(z)
                with act.frozen():  # type: ignore[attr-defined]
                    rep = gradcheck(head, z, target=target, seed=seed)
            else:
                rep = gradcheck(head, z, target=target, seed=seed)
            failures += not rep.ok
            path = "paired" if head.paired else "fused" if head.fused else "chain"
            result = "ok" if rep.ok else f"WRONG at {rep.worst_index}"
            print(f"{a:<22} {name:<16} {path:<8} {rep.max_abs_err:>12.2e} {rep.max_rel_err:>12.2e}  {result}")
    checked = len(act_names) * len(loss_names) - len(skipped)
    if checked == 0:
        print(f"no composable pair among {', '.join(skipped)}: the activation's range lies outside the loss's domain")
        return 2
    verdict = "all passed" if failures == 0 else f"{failures} FAILED"
    print(f"\n{checked} pairs checked, {verdict} (float64 central differences, random upstream vectors).")
    if skipped:
        print(f"{len(skipped)} pairs not composable: the activation's range lies outside the loss's domain "
              f"(compose() refuses them): {', '.join(skipped)}")
    return 1 if failures else 0


def _cmd_check(args: argparse.Namespace) -> int:
    names = args.names
    if names in (["all"], []):
        return _check_pairs(activations.names(), losses.names(), args.seed)
    acts = [n for n in names if n in activations.names()]
    loss_names = [n for n in names if n in losses.names()]
    unknown = [n for n in names if n not in acts and n not in loss_names]
    if unknown:
        print(f"gradkit: unknown name(s) {', '.join(unknown)}; see 'gradkit list'", file=sys.stderr)
        return 2
    return _check_pairs(acts or activations.names(), loss_names or losses.names(), args.seed)


def _cmd_jacobian(args: argparse.Namespace) -> int:
    try:
        act = activations.get(args.name, **_kwargs(args.set))
        jac = act.jacobian(np.asarray(args.values, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        print(f"gradkit: {exc}", file=sys.stderr)
        return 2
    print(np.array2string(jac, precision=8, separator=", ", suppress_small=True))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    print("activations:", ", ".join(activations.names()))
    print("losses:     ", ", ".join(losses.names()))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    try:
        from .training_job import TrainConfig, run
    except ImportError as exc:  # pragma: no cover - the train extra is missing
        print(f"gradkit train needs the 'train' extra (pip install 'gradkit[train]'): {exc}", file=sys.stderr)
        return 2
    hidden = _hidden(args.hidden)
    if hidden is None:
        return 2
    config = TrainConfig(data=args.data, label=args.label, hidden=hidden, activation=args.activation,
                         output=args.output, loss=args.loss, epochs=args.epochs, lr=args.lr,
                         batch_size=args.batch_size, seed=args.seed, out=args.out, quiet=args.quiet)
    try:
        summary = run(config)
    except (ValueError, TypeError, FloatingPointError) as exc:
        print(f"gradkit: {exc}", file=sys.stderr)
        return 1
    out = args.out
    print(f"{summary['data']}: test accuracy {summary['test_accuracy']:.4f} after {summary['epochs']} epochs "
          f"in {summary['train_seconds']:.1f} s")
    print(f"wrote {out}/training.png, {out}/history.json, {out}/model.npz")
    return 0


def _hidden(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(h) for h in text.split(",") if h)
    except ValueError:
        print(f"gradkit: --hidden takes comma-separated integers, got {text!r}", file=sys.stderr)
        return None


def _cmd_compare(args: argparse.Namespace) -> int:
    try:
        from .compare import PAIRS, CompareConfig, run
    except ImportError as exc:  # pragma: no cover - the train extra is missing
        print(f"gradkit compare needs the 'train' extra (pip install 'gradkit[train]'): {exc}", file=sys.stderr)
        return 2
    hidden = _hidden(args.hidden)
    if hidden is None:
        return 2
    pairs = list(PAIRS)
    if args.pairs:
        pairs = []
        for item in args.pairs.split(","):
            out, sep, loss = item.partition(":")
            if not sep:
                print(f"gradkit: --pairs takes OUTPUT:LOSS items, comma-separated; got {item!r}", file=sys.stderr)
                return 2
            pairs.append((f"{out} + {loss}", out, loss))
    config = CompareConfig(data=args.data, label=args.label, seeds=args.seeds, hidden=hidden,
                           activation=args.activation, epochs=args.epochs, lr=args.lr,
                           batch_size=args.batch_size, out=args.out, pairs=pairs)
    try:
        run(config)
    except (ValueError, TypeError, FloatingPointError, KeyError) as exc:
        print(f"gradkit: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.distributed:
        try:
            from .bench_distributed import run as run_distributed
        except ImportError as exc:  # pragma: no cover - the dask extra is missing
            print(f"gradkit bench --distributed needs the 'dask' extra (pip install 'gradkit[dask]'): {exc}", file=sys.stderr)
            return 2
        run_distributed(args.out, quick=args.quick)
        return 0
    from .bench import run

    run(args.out, quick=args.quick, threads=args.threads)
    return 0


def _add_training_args(p: argparse.ArgumentParser) -> None:
    """The data, network and optimizer options shared by ``train`` and ``compare``."""
    p.add_argument("--data", help="a .csv (header, label column) or .npz (arrays X, y); default: digits")
    p.add_argument("--label", default="label", help="the CSV's label column (default 'label', else the last)")
    p.add_argument("--hidden", default="256", help="hidden layer sizes, comma-separated (default 256)")
    p.add_argument("--activation", default="relu", help="hidden activation (default relu)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=int, default=32)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradkit", description="Exact, composable derivatives for neural-network building blocks.")
    parser.add_argument("--version", action="version", version=f"gradkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train an MLP (default: scikit-learn's digits data); progress, plot, checkpoint")
    _add_training_args(p)
    p.add_argument("--output", default="softmax", help="output activation (default softmax)")
    p.add_argument("--loss", default="cross_entropy", help="loss (default cross_entropy; e.g. mse)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out", help="output folder (default ./out)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("compare", help="train one MLP with softmax and each alternative (Taylor, spherical, "
                       "sparsemax, entmax) over seeds; table and plot")
    _add_training_args(p)
    p.add_argument("--seeds", type=int, default=5, help="seeds, each with its own split and initialization (default 5)")
    p.add_argument("--pairs", help="OUTPUT:LOSS items, comma-separated (default: the six of the README)")
    p.add_argument("--out", default="out/compare", help="folder for compare.json and compare.png")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("bench", help="time gradkit against naive NumPy, scipy, PyTorch, JAX in one run")
    p.add_argument("--out", default="out/bench", help="folder for bench.json and bench.png")
    p.add_argument("--threads", type=int, default=2, help="PyTorch threads (default 2, like this machine)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs, measures nothing")
    p.add_argument("--distributed", action="store_true",
                   help="instead: Dask data-parallel training with 1 and 2 workers against one process")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("jacobian", help="print the Jacobian of an activation at a point")
    p.add_argument("name", help="activation name (see 'gradkit list')")
    p.add_argument("values", nargs="+", type=float, help="the point x")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="constructor argument, e.g. --set temperature=2")
    p.set_defaults(func=_cmd_jacobian)

    p = sub.add_parser("check", help="gradcheck activation x loss pairs ('all', or names)")
    p.add_argument("names", nargs="*", default=["all"], help="'all', or activation and/or loss names")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("list", help="list activations and losses")
    p.set_defaults(func=_cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
