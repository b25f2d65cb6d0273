"""Argument types and the parser of `tfp-flows` (no TensorFlow import)."""

import argparse
import ast
import os
import re

OBJECTIVES = ("auto", "nll", "elbo", "iwae")
SPLITS = ("test", "validation", "train")
_KEY_VALUE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)


class CLIError(Exception):
    """A usage error: printed as `tfp-flows: error: <message>`, exit code 2."""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default in `--help`, except for unset (None) and flag options."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool) or action.default == []:
            return action.help
        return super()._get_help_string(action)


# -- Argument types -----------------------------------------------------------------------


def _number_type(convert, accept, expected):
    """An argparse `type=` that converts with `convert` and rejects values `accept` refuses."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {expected}; got {text!r}")
        return value

    return parse


positive_int = _number_type(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number_type(int, lambda v: v >= 0, "a non-negative integer")
positive_float = _number_type(float, lambda v: 0 < v < float("inf"), "a positive finite number")


def existing_dir(text):
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"directory {text!r} does not exist")
    return text


def parse_value(text):
    """A Python literal (`3`, `0.5`, `64,64`, `(64, 64)`, `True`), else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false", "none"):
        return {"true": True, "false": False, "none": None}[lowered]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_key_values(items, option):
    """`["a=1", "b=x"] -> {"a": 1, "b": "x"}`; raises `CLIError` naming `option`."""
    result = {}
    for item in items or ():
        match = _KEY_VALUE.match(item)
        if match is None:
            raise CLIError(f"{option} must be key=value with a Python identifier as key "
                           f"(e.g. {option} num_layers=4); got {item!r}.")
        key, value = match.groups()
        if key in result:
            raise CLIError(f"{option} {key!r} is given more than once.")
        result[key] = parse_value(value)
    return result


# -- Parser -------------------------------------------------------------------------------


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tfp-flows", description="Train, evaluate and sample normalizing flows.",
        formatter_class=_Formatter)
    parser.add_argument("-v", "--verbose", dest="show_tf_logs", action="store_true",
                        help="show TensorFlow's start-up log lines (hidden by default)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name, help_text):
        return sub.add_parser(name, help=help_text, description=help_text,
                              formatter_class=_Formatter)

    fit = command("fit", "train a registered flow on a data set")
    fit.add_argument("--flow", required=True, help="registered flow name (see `list`)")
    _add_data_args(fit, required=True)
    fit.add_argument("--epochs", type=positive_int, default=100, help="maximum epochs")
    fit.add_argument("--batch-size", type=positive_int, default=256, help="minibatch size")
    fit.add_argument("--learning-rate", type=positive_float, default=1e-3,
                     help="Adam's learning rate")
    fit.add_argument("--objective", choices=OBJECTIVES, default="auto",
                     help="training objective; 'auto' is 'elbo' if the distribution has an "
                          "`elbo` method, else 'nll'")
    fit.add_argument("--iwae-samples", type=positive_int, default=8,
                     help="importance samples of the 'iwae' objective")
    fit.add_argument("--flow-arg", action="append", default=[], metavar="KEY=VALUE",
                     help="keyword argument of the flow builder (repeatable); values are "
                          "Python literals, e.g. hidden_units=64,64")
    fit.add_argument("--patience", type=positive_int, default=10,
                     help="early-stopping patience in epochs (on val_loss; best epoch restored)")
    fit.add_argument("--init-rows", type=non_negative_int, default=None,
                     help="training rows for data-dependent initialisation (default: "
                          "tfp_flows.keras.train.DEFAULT_INIT_ROWS = 1024; 0: none)")
    fit.add_argument("--jit", action="store_true", help="compile training steps with XLA")
    fit.add_argument("--no-plots", action="store_true", help="skip the 2-D PNG plots")
    fit.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2,
                     help="Keras `fit` verbosity")
    fit.add_argument("--run-dir", required=True, help="output directory (created)")

    ev = command("evaluate", "test NLL of a trained run")
    ev.add_argument("--run-dir", required=True, help="directory of a `fit` run")
    _add_data_args(ev, required=False)
    ev.add_argument("--split", choices=SPLITS, default="test", help="which split to evaluate")

    sample = command("sample", "draw samples of a trained run into a .npy file")
    sample.add_argument("--run-dir", required=True, help="directory of a `fit` run")
    sample.add_argument("--num", type=positive_int, required=True, help="number of samples")
    sample.add_argument("--out", required=True, help="output .npy file")
    sample.add_argument("--seed", type=non_negative_int, default=0, help="sampling seed")

    ls = command("list", "list the registered flows and data sets (TensorFlow is not imported)")
    ls.add_argument("--verbose", action="store_true",
                    help="also each flow's arguments (with defaults)")
    return parser


def _add_data_args(p, required):
    p.add_argument("--dataset", required=required, default=None,
                   help="data set name (see `list`)" + ("" if required else
                                                          "; default: the run's"))
    p.add_argument("--data-dir", type=existing_dir, default=None,
                   help="folder of the UCI data (MAF layout); needed by power, gas, hepmass, "
                        "miniboone, bsds300 only (default: none)")
    p.add_argument("--num-samples", type=positive_int, default=None,
                   help="training points of generated sets (default 1000) or a training "
                        "subsample of real sets (default: all)")
    p.add_argument("--dataset-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="keyword argument of the data loader, e.g. noise=0.05 (repeatable)")
    p.add_argument("--seed", type=non_negative_int, default=None if not required else 0,
                   help="seed of the data and the model" + ("" if required else
                                                           "; default: the run's"))
    p.add_argument("--eval-samples", type=positive_int, default=None,
                   help="importance samples S for distributions whose log-density is "
                        "importance-sampled (default 100, or the run's)")
