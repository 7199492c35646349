"""The ``gradkit`` command line.

``gradkit train``                 trains an MLP on the digits data (progress, plot, checkpoint);
``gradkit compare``               trains one MLP with softmax and each alternative, over seeds;
``gradkit bench``                 times gradkit against its peers, side by side;
``gradkit jacobian softmax 1 2``  prints a Jacobian;
``gradkit check all``             gradchecks every activation × loss pair;
``gradkit list``                  lists the registered functions.

``--plugin MODULE`` (before or after the command, repeatable) imports a module, or a ``.py``
file, before the command line is read: whatever it registers with ``gk.activations.register``
/ ``gk.losses.register`` is then a valid ``--activation``/``--output``/``--loss`` name, e.g.
``gradkit --plugin my_acts train --output spnorm``.

Exit status, as pip and git use it: 0 on success, 1 when a run fails (a file that
cannot be read or written, bad data, a missing extra, a diverging run), 2 for a
usage error (an option value out of range, an unknown name), caught while the
command line is parsed, before any work starts. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import __version__, activations, losses
from .._optional import MissingExtraError, require
from ..check import gradcheck, random_target
from ..composition import compose
from ._text import plural

__all__ = ["build_parser", "main"]


# -- argparse types: a bad value is a usage error (exit 2) before any work ----------------------------
def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}; got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}; got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0; got {text!r}")
    return value


def _hidden_sizes(text: str) -> tuple[int, ...]:
    items = text.split(",")
    if not text.strip() or any(not item.strip() for item in items):
        raise argparse.ArgumentTypeError(f"expected comma-separated layer sizes like 256 or 64,32; got {text!r}")
    try:
        sizes = tuple(int(item) for item in items)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 64,32; got {text!r}") from None
    if min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"every layer size must be >= 1; got {text!r}")
    return sizes


def _name_of(registry: Any, kind: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in registry.names():
            raise argparse.ArgumentTypeError(f"unknown {kind} {text!r}; valid names: {', '.join(registry.names())} "
                                             "(custom ones: --plugin MODULE, the module that registers them)")
        return text

    parse.__name__ = kind
    return parse


def _plugin_values(argv: Sequence[str]) -> list[str]:
    """The values of ``--plugin`` in ``argv`` (``--plugin X``, ``--plugin=X``, or an abbreviation
    argparse accepts, ``--plug X``), up to a ``--``."""
    values = []
    tokens = list(argv)
    for i, token in enumerate(tokens):
        if token == "--":
            break
        option, eq, value = token.partition("=")
        if len(option) >= 4 and "--plugin".startswith(option):
            if eq:
                values.append(value)
            elif i + 1 < len(tokens):
                values.append(tokens[i + 1])
    return values


def _load_plugin(spec: str) -> None:
    """Import ``spec``: a module name (``my_pkg.acts``) or the path of a ``.py`` file."""
    if not spec:
        raise ValueError("expected a module name or the path of a .py file; got ''")
    if spec.endswith(".py") or os.sep in spec or (os.altsep is not None and os.altsep in spec):
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise ValueError(f"no such file (or not a regular file): {path}")
        stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
        name = f"gradkit_plugin_{stem}_{hashlib.sha256(path.encode()).hexdigest()[:12]}"
        if name in sys.modules:  # this file was imported already (main() called twice in one process)
            return
        found = importlib.util.spec_from_file_location(name, path)
        if found is None or found.loader is None:
            raise ValueError(f"not an importable Python file: {path}")
        module = importlib.util.module_from_spec(found)
        sys.modules[name] = module
        try:
            found.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    else:
        try:
            importlib.import_module(spec)
        except ModuleNotFoundError as exc:
            # `gradkit` is a script: unlike `python -m`, it does not put the current folder on sys.path. A module
            # there is what `--plugin my_acts` means when `my_acts.py` sits beside the user: import it from there
            here = os.getcwd()
            top = spec.split(".")[0]
            if exc.name != top or here in sys.path or not (os.path.isfile(os.path.join(here, top + ".py"))
                                                          or os.path.isdir(os.path.join(here, top))):
                raise
            sys.path.insert(0, here)
            try:
                importlib.import_module(spec)
            finally:
                sys.path.remove(here)


def _pairs(text: str) -> list[tuple[str, str, str]]:
    pairs = []
    for item in text.split(","):
        out, sep, loss = item.partition(":")
        if not sep or not out or not loss:
            raise argparse.ArgumentTypeError(f"expected OUTPUT:LOSS items, comma-separated; got {item!r}")
        _name_of(activations, "output activation")(out)
        _name_of(losses, "loss")(loss)
        try:
            compose(activations.get(out), losses.get(loss))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{out}:{loss} is not composable: {exc}") from None
        pairs.append((f"{out} + {loss}", out, loss))
    return pairs


def _kwargs(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE; got {pair!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _check_pairs(act_names: list[str], loss_names: list[str], seed: int) -> int:
    heads, skipped = [], []
    for a in act_names:
        for name in loss_names:
            act, loss = activations.get(a), losses.get(name)
            try:
                heads.append((a, name, act, compose(act, loss)))
            except ValueError:
                skipped.append(f"{a}+{name}")
    if not heads:
        print(f"gradkit: no composable pair among {', '.join(skipped)}: the activation's range lies outside "
              "the loss's domain", file=sys.stderr)
        return 2
    rng = np.random.default_rng(seed)
    header = f"{'activation':<22} {'loss':<16} {'path':<8} {'max abs err':>12} {'max rel err':>12}  result"
    print(header)
    print("-" * len(header))
    failures = 0
    for a, name, act, head in heads:
        z = rng.standard_normal((3, 5)) * 1.5
        target = random_target(head.loss, z.shape, rng)
        if act.stochastic:  # one sample, held fixed while the derivatives are checked
            act(z)
            with act.frozen():  # type: ignore[attr-defined]
                rep = gradcheck(head, z, target=target, rng=seed)
        else:
            rep = gradcheck(head, z, target=target, rng=seed)
        failures += not rep.ok
        path = "paired" if head.paired else "fused" if head.fused else "chain"
        result = "ok" if rep.ok else f"WRONG at {rep.worst_index}"
        print(f"{a:<22} {name:<16} {path:<8} {rep.max_abs_err:>12.2e} {rep.max_rel_err:>12.2e}  {result}")
    verdict = "all passed" if failures == 0 else f"{failures} FAILED"
    print(f"\n{plural(len(heads), 'pair')} checked, {verdict} (float64 central differences, random upstream vectors).")
    if skipped:
        print(f"{plural(len(skipped), 'pair')} not composable: the activation's range lies outside the loss's domain "
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
        print(f"gradkit check: unknown name(s) {', '.join(unknown)}; see 'gradkit list' (custom names: --plugin MODULE)",
              file=sys.stderr)
        return 2
    return _check_pairs(acts or activations.names(), loss_names or losses.names(), args.seed)


def _cmd_jacobian(args: argparse.Namespace) -> int:
    try:
        act = activations.get(args.name, **_kwargs(args.set))
        x = np.asarray(args.values, dtype=np.float64)
        if act.stochastic:  # one sample: draw its noise (seeded by --set rng=N), then differentiate at it
            act(x)
            with act.frozen():  # type: ignore[attr-defined]
                jac = act.jacobian(x)
            seed = getattr(act, "rng", None)
            print(f"gradkit jacobian: {args.name} is random; this is the Jacobian at one noise sample "
                  + ("(unseeded: add --set rng=0 to repeat it)" if seed is None else f"(--set rng={seed})"),
                  file=sys.stderr)
        else:
            jac = act.jacobian(x)
    except (TypeError, ValueError) as exc:
        print(f"gradkit jacobian: {exc}", file=sys.stderr)
        return 2
    print(np.array2string(jac, precision=8, separator=", ", suppress_small=True))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    print("activations:", ", ".join(activations.names()))
    print("losses:     ", ", ".join(losses.names()))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train_job import TrainConfig, run

    config = TrainConfig(data=args.data, label=args.label, hidden=_hidden_for(args), activation=args.activation,
                         output=args.output, loss=args.loss, epochs=args.epochs, lr=args.lr,
                         batch_size=args.batch_size, seed=args.seed, out=args.out, quiet=args.quiet)
    summary = run(config)
    out = args.out
    print(f"{summary['data'].split(':')[0]}: test accuracy {summary['test_accuracy']:.4f} after {plural(summary['epochs'], 'epoch')} "
          f"in {summary['train_seconds']:.1f} s")
    print(f"wrote {out}/training.png, {out}/history.json, {out}/model.npz")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .predict_job import run

    run(args.model, args.data, out=args.out, proba=args.proba, label=args.label)
    return 0


def _add_predict(sub: Any) -> None:
    p = _subparser(sub, "predict", "predict the classes of new rows with a model from 'gradkit train' (its scaling "
                                   "and class names come with it)")
    p.add_argument("--model", required=True, metavar="PATH", help="a checkpoint written by 'gradkit train'")
    p.add_argument("--data", required=True, metavar="PATH",
                   help="a .csv (the model's feature columns, optionally a label column) or an .npz with X "
                        "(optionally y); with labels the accuracy is reported")
    p.add_argument("--label", default=None, metavar="COLUMN", help="the CSV's label column by header name")
    p.add_argument("--out", default=None, metavar="PATH", help="write the predictions there (CSV) instead of stdout")
    p.add_argument("--proba", action="store_true", help="also a probability column per class")
    p.set_defaults(func=_cmd_predict)


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import CompareConfig, run

    config = CompareConfig(data=args.data, label=args.label, seeds=args.seeds, hidden=_hidden_for(args),
                           activation=args.activation, epochs=args.epochs, lr=args.lr,
                           batch_size=args.batch_size, out=args.out, pairs=args.pairs)
    run(config)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.distributed:
        require("gradkit bench --distributed", "dask")
        from .bench_distributed import run as run_distributed

        run_distributed(args.out, quick=args.quick)
        return 0
    require("gradkit bench", "bench")
    from .bench import run

    run(args.out, quick=args.quick, threads=args.threads, rounds=args.rounds, markdown_path=args.markdown,
        peer_memory=not args.no_peer_memory)
    return 0


def _hidden_for(args: argparse.Namespace) -> tuple[int, ...]:
    """``--hidden``, or its default: one layer of 256, of 512 for the MNIST datasets (784 inputs)."""
    from .train_job import DATASETS

    return args.hidden if args.hidden is not None else ((512,) if args.data in DATASETS else (256,))


def _add_training_args(p: argparse.ArgumentParser) -> None:
    """The data, network and optimizer options shared by ``train`` and ``compare``."""
    p.add_argument("--data", help="a .csv (header, label column) or .npz (arrays X, y), or mnist / fashion-mnist "
                   "(their own train/test split, pixels / 255; `python -m gradkit.datasets mnist` obtains them); default: "
                   "scikit-learn's digits")
    p.add_argument("--label", help="the CSV's label column, by header name (default: 'label' if the header has it, "
                   "else the last column)")
    p.add_argument("--hidden", type=_hidden_sizes, metavar="SIZES",
                   help="hidden layer sizes, comma-separated, e.g. 64,32 (default: 256; 512 for --data mnist or "
                        "fashion-mnist)")
    p.add_argument("--activation", type=_name_of(activations, "activation"), default="relu", metavar="NAME",
                   help=f"hidden activation, one of: {', '.join(activations.names())}")
    p.add_argument("--epochs", type=_int_at_least(1), default=40, help="passes over the training data")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate")
    p.add_argument("--batch-size", type=_int_at_least(1), default=32, help="rows per gradient step")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, like ``git`` and ``pip`` help pages (not "None": the help says)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


_PLUGIN_ARGS = ("--plugin",)
_PLUGIN_KWARGS = {"action": "append", "metavar": "MODULE", "dest": "plugins",
                  "help": "import MODULE (a module name or a .py file) first, so that the activations and losses "
                          "it registers can be named (repeatable)"}


def _subparser(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", formatter_class=_Formatter)
    # also after the command; SUPPRESS: the subcommand must not reset what the main parser read
    p.add_argument(*_PLUGIN_ARGS, default=argparse.SUPPRESS, **_PLUGIN_KWARGS)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The ``gradkit`` argument parser (every option value is validated here: a bad one exits 2)."""
    parser = argparse.ArgumentParser(prog="gradkit", formatter_class=_Formatter,
                                     description="Exact, composable derivatives for neural-network building blocks.")
    parser.add_argument("--version", action="version", version=f"gradkit {__version__}")
    parser.add_argument(*_PLUGIN_ARGS, default=[], **_PLUGIN_KWARGS)  # type: ignore[arg-type]
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _subparser(sub, "train", "train an MLP (default: scikit-learn's digits data); progress, plot, checkpoint")
    _add_training_args(p)
    p.add_argument("--output", type=_name_of(activations, "output activation"), default="softmax", metavar="NAME",
                   help="output activation (any activation name, see --activation)")
    p.add_argument("--loss", type=_name_of(losses, "loss"), default="cross_entropy", metavar="NAME",
                   help=f"loss, one of: {', '.join(losses.names())}")
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="seeds the split, the weights and the batches")
    p.add_argument("--out", default="out", help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
    _add_predict(sub)

    p = _subparser(sub, "compare", "train one MLP with softmax and each alternative (Taylor, spherical, "
                   "sparsemax, entmax) over seeds; table and plot")
    _add_training_args(p)
    p.add_argument("--seeds", type=_int_at_least(1), default=5, help="seeds, each with its own split and initialization")
    p.add_argument("--pairs", type=_pairs, metavar="OUTPUT:LOSS,...",
                   help="output activation:loss items, comma-separated, with names from --activation and "
                        "'gradkit list' (default: the six of the 'Beyond softmax' guide; with --data mnist or "
                        "fashion-mnist, the paper's three: softmax:cross_entropy, log_taylor_softmax:nll, "
                        "log_spherical_softmax:nll; the list itself takes no spaces)")
    p.add_argument("--out", default="out/compare", help="folder for compare.json and compare.png")
    p.set_defaults(func=_cmd_compare)

    p = _subparser(sub, "bench", "time gradkit against naive NumPy, scipy, PyTorch, the entmax package and JAX in "
                                 "alternating rounds; minima and medians, every target met or missed")
    p.add_argument("--out", default="out/bench", help="folder for bench.json, bench.md and bench.png")
    p.add_argument("--threads", type=_int_at_least(1), default=2, help="PyTorch threads")
    p.add_argument("--rounds", type=_int_at_least(1), default=15,
                   help="alternating rounds of the fast cases (the slow ones take half, at least 3)")
    p.add_argument("--markdown", metavar="PATH", default=None,
                   help="also write the results table (markdown, as in bench.md) to PATH")
    p.add_argument("--no-peer-memory", action="store_true",
                   help="skip the peers' peak memory (a fresh process per case)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs, measures nothing")
    p.add_argument("--distributed", action="store_true",
                   help="instead: Dask data-parallel training with 1 and 2 workers against one process")
    p.set_defaults(func=_cmd_bench)

    p = _subparser(sub, "jacobian", "print the Jacobian of an activation at a point")
    p.add_argument("name", help="activation name (see 'gradkit list')")
    p.add_argument("values", nargs="+", type=float, help="the point x, e.g. 1 -2.5 -1e308")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="constructor argument, e.g. --set temperature=2 (or --set rng=0 for gumbel_softmax)")
    p.set_defaults(func=_cmd_jacobian)
    # argparse takes "-1e308" for an option (its number pattern has no exponent); here every "-<digit>",
    # "-.5", "-inf" is a value: this parser has no option that looks like one
    p._negative_number_matcher = re.compile(r"^-(\d|\.\d|inf|infinity|nan)", re.IGNORECASE)

    p = _subparser(sub, "check", "gradcheck activation x loss pairs ('all', or names)")
    p.add_argument("names", nargs="*", default=["all"], help="'all', or activation and/or loss names")
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="seeds the points and upstream vectors")
    p.set_defaults(func=_cmd_check)

    p = _subparser(sub, "list", "list activations and losses")
    p.set_defaults(func=_cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 the run failed, 2 a usage error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    for spec in _plugin_values(argv):  # before the parser is built: it validates names against the registries
        try:
            _load_plugin(spec)
        except Exception as exc:  # noqa: BLE001 - the user's module: any failure is a usage error, one line
            print(f"gradkit: error: --plugin {spec}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2), printed by argparse
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command == "train":  # a pair compose() refuses is a usage error, like an unknown name
        try:
            compose(activations.get(args.output), losses.get(args.loss))
        except ValueError as exc:
            print(f"gradkit train: error: --output {args.output} with --loss {args.loss}: {exc}", file=sys.stderr)
            return 2
    prog = f"gradkit {args.command}"
    try:
        return int(args.func(args))
    except MissingExtraError as exc:  # its message names the command already
        print(exc, file=sys.stderr)
        return 1
    except BrokenPipeError:  # `gradkit train | head -1`: the reader left; end quietly (Python's documented recipe)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file or folder that cannot be read or written, a full disk
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{prog}: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FloatingPointError, KeyError) as exc:  # bad data, a diverging run
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
