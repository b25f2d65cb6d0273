"""`tfp-flows`: train, evaluate and sample registered flows.

    tfp-flows list [--verbose]
    tfp-flows fit --flow real_nvp --dataset moons --epochs 50 --run-dir runs/moons
    tfp-flows fit --flow maf --dataset power --data-dir data/ --flow-arg num_layers=10 \\
        --flow-arg hidden_units=512,512 --jit --run-dir runs/power
    tfp-flows evaluate --run-dir runs/moons
    tfp-flows sample --run-dir runs/moons --num 1000 --out samples.npy

(`python -m tfp_flows ...` is the same.) `list` reads the static flow table of
`tfp_flows.internal.flow_catalog` and imports no TensorFlow; the other
commands import TensorFlow with its start-up log lines hidden
(`tfp_flows.internal.tf_logs`) unless `tfp-flows --verbose COMMAND ...`. Flows
are looked up by name in the flow registry (`tfp_flows.flows.registry`;
importing `tfp_flows.flows` registers every family's flows). `main(argv)`
returns the exit code: 0 on success, 2 for a usage error (message on stderr).
Benchmarks are scripts of the source checkout, run directly: `python
benchmarks/NAME.py ...`.

`fit` trains with `tfp_flows.keras.train.fit` and writes to the run directory:

- `metrics.json`: test and validation NLL (nats; an importance-sampled
  estimate with `--eval-samples` samples for distributions whose declared
  log-density is importance-sampled), training seconds (and the first
  epoch's, which includes tracing), parameter count, the Keras history,
  flow name and arguments, data set and the full command configuration;
- `model.keras` (`FlowModel.save`; reload with `keras.saving.load_model`);
- `best.weights.h5` (the best validation epoch's weights; early stopping
  restores them before evaluation);
- for 2-D data, `density.png` (model density on a grid) and `samples.png`
  (training data beside model samples).

Modules: `parsing` (argument types, `parse_key_values`, the parser; no
TensorFlow), `commands` (the subcommands), `plots` (the 2-D PNGs).
"""

import sys

from tfp_flows.cli.parsing import CLIError, build_parser, parse_key_values

__all__ = ["CLIError", "build_parser", "main", "parse_key_values"]


def main(argv=None):
    """Runs the CLI on `argv` (default `sys.argv[1:]`); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on usage errors, 0 for --help
        return 0 if exc.code is None else exc.code
    from tfp_flows.cli.commands import COMMANDS

    if args.command != "list":
        from tfp_flows.internal import tf_logs

        tf_logs.import_tensorflow(quiet=not args.show_tf_logs)
    try:
        return COMMANDS[args.command](args)
    except CLIError as err:
        print(f"tfp-flows: error: {err}", file=sys.stderr)
        return 2

