"""Marginalizing / augmented flows (de Boer, 2020): the thesis' Tables 2 and 3, and proposals.

    python -m benchmarks.augmentation table2 --jit [--epochs 60 --runs 3 --dims 2 3 4]
    python -m benchmarks.augmentation moons --jit [--epochs 40 --runs 3]
    python -m benchmarks.augmentation proposal --jit [--epochs 60 --runs 2]
    python -m benchmarks.augmentation table2-plot --inputs A.json B.json  # one plot
    python -m benchmarks.augmentation table2-run --jit --psis 3 --dims 3 --augments 3 --run 0

Models: `marginalizing_flow` (ActNorm, 1 coupling, 4 R-blocks, de Boer, 2020, Sec.
2.1) trained by `FlowModel` + `model.fit` on the single-sample ELBO with fresh
eps every step, Adam 1e-3, as the thesis' Table 1 (but far fewer epochs).
Log-likelihoods are the importance-sampled estimate with S = 200 (the thesis'
S) on a held-out test set of the same size as the training set, and on the
training set (the thesis does not say which set its tables use).

Cost. Tracing and compiling the train step of this 9-coupling flow costs far
more than the few hundred steps a run trains, so every (D, B, proposal) gets
one `Trainer`: one model compiled once, whose weights, ActNorm statistics,
optimizer state and noise stream are reset for each run. A run is a function
of its seed alone (`keras.utils.set_random_seed(seed)` draws the initial
weights and the minibatch order; the seed is folded into the per-step eps
seeds), so it does not depend on which runs came before it in the process.
The random shuffles inside the flow are fixed by `--seed` (part of the
architecture, the same for every run).
"""

import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import base_parser, write_results
from tfp_flows import datasets
from tfp_flows.evaluation import mean_of_batches
from tfp_flows.keras import ELBO, FlowModel
from tfp_flows.keras.train import count_parameters

# Table 2 of the thesis (best of 10 models, S = 200), keyed by (psi, D): B = 0..4.
THESIS_TABLE2 = {
    (1, 2): [-2.5, -2.51, -2.51, -2.5, -2.51], (1, 3): [-3.77, -3.74, -3.75, -3.75, -3.75],
    (1, 4): [-4.98, -5.02, -4.98, -4.99, -5.0], (2, 2): [-0.05, -0.16, 0.15, 0.24, 0.21],
    (2, 3): [-0.7, -0.24, -0.09, -0.04, -0.03], (2, 4): [-0.73, -0.97, -0.49, -0.41, -0.1],
    (3, 2): [0.25, 0.72, 1.44, 1.65, 2.35], (3, 3): [-0.92, 0.03, 1.47, 2.22, 1.01],
    (3, 4): [-1.48, -1.1, -0.66, -0.26, 0.74],
}
# Exact E[log p(x)] per coordinate of N(0, 1)^psi (minus the differential entropy):
# psi = 1: -(1/2) log(2 pi e); psi = 2 (chi-squared, 1 dof): -(1/2 + log(2 sqrt(pi))
# + digamma(1/2) / 2); psi = 3: -(h(z) + log 3 + 2 E log|z|), E log|z| = -(gamma + log 2) / 2.
EXACT_PER_DIM = {1: -1.4189385, 2: -0.7837571, 3: -1.2471880}


_JIT = [False]


def args_jit():
    """XLA or not (`--jit`). Compiling costs minutes per Trainer on this shared
    machine but is paid once per (D, B); each epoch then runs about 2x faster and
    each S = 200 evaluation about 5x faster than in graph mode."""
    return _JIT[0]


def ci95(values):
    """Mean and half-width of the Student-t 95% interval (nan for fewer than 2 values)."""
    from scipy import stats
    values = np.asarray(values, float)
    if values.size == 0:
        raise ValueError("ci95: `values` must hold at least one number; got none.")
    if len(values) < 2:
        return float(values.mean()), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(half)


class _SeededELBO(ELBO):
    """The ELBO objective with a run seed folded into FlowModel's per-step seeds.

    FlowModel bakes its integer seed into the traced train step (setting
    `model.seed` re-traces it); folding in a variable instead lets one compiled
    step draw a different eps stream per run. This is also why `Trainer` does
    not use `tfp_flows.keras.train.fit`, which builds and compiles a model per call.
    """

    def __init__(self):
        self.run_seed = tf.Variable(0, dtype=tf.int32, trainable=False, name="run_seed")

    def __call__(self, distribution, x, *, conditional_input=None, seed=None, training=False):
        seed = tf.random.experimental.stateless_fold_in(seed, self.run_seed)
        return super().__call__(distribution, x, conditional_input=conditional_input,
                                seed=seed, training=training)


class Trainer:
    """One compiled marginalizing flow on R^{D+B}, retrained from scratch per run.

    Args:
      event_size: D. num_augment: B. batch_size: minibatch of `fit`.
      proposal: 'standard_normal' (thesis) or 'gaussian' (learned q(eps | x)).
      hidden_units: conditioner MLP widths. flow_seed: seed of the flow's shuffles.
    """

    def __init__(self, event_size, num_augment, batch_size, proposal="standard_normal",
                 hidden_units=(32, 32), flow_seed=0):
        self.batch_size = int(batch_size)
        self._kwargs = dict(event_size=int(event_size), num_augment=int(num_augment),
                            hidden_units=tuple(hidden_units), seed=int(flow_seed))
        if num_augment:
            self._kwargs["proposal"] = proposal
        self._objective = _SeededELBO()
        self.model = self._build()
        self.model.compile(keras.optimizers.Adam(1e-3), jit_compile=args_jit())
        self.model.optimizer.build(self.model.trainable_variables)
        self._fresh_optimizer = [v.numpy() for v in self.model.optimizer.variables]
        self._log_prob_fns = {}
        self._elbo_fn = tf.function(
            lambda x, seed: self.model.distribution.elbo(x, seed=seed), jit_compile=args_jit())

    def _build(self):
        kwargs = dict(self._kwargs)
        seed = kwargs.pop("seed")
        model = FlowModel.from_flow("marginalizing_flow", objective=self._objective, seed=seed,
                                    **kwargs)
        # Keras layers build lazily: one eager call creates every weight.
        x = tf.zeros([2, kwargs["event_size"]])
        model.distribution.elbo(x, seed=(0, 0))
        return model

    def fit(self, x_train, epochs, seed):
        """Trains from a fresh start drawn from `seed`; returns the wall seconds of `fit`.

        The first call of a Trainer also pays tracing and (with `--jit`) XLA
        compilation; `run_table2` reports that part separately.
        """
        keras.utils.set_random_seed(seed)
        fresh = self._build()
        self.model.set_weights(fresh.get_weights())  # also clears the ActNorm 'initialized' flags
        for var, value in zip(self.model.optimizer.variables, self._fresh_optimizer, strict=True):
            var.assign(value)
        self._objective.run_seed.assign(seed)
        self.model.initialize_from_data(x_train)
        start = time.perf_counter()
        history = self.model.fit(x_train, batch_size=self.batch_size, epochs=epochs, verbose=0,
                                 shuffle=True)
        self.last_loss = float(history.history["loss"][-1])
        return time.perf_counter() - start

    def log_lik(self, x, num_samples=200, seed=0):
        """Mean importance-sampled log-likelihood (nats) with S = num_samples."""
        if num_samples not in self._log_prob_fns:
            self._log_prob_fns[num_samples] = tf.function(
                lambda x, seed: self.model.log_prob(x, num_samples=num_samples, seed=seed),
                jit_compile=args_jit())
        fn, seed = self._log_prob_fns[num_samples], tf.constant([seed, 1], tf.int32)
        return mean_of_batches(lambda x: fn(x, seed), x, batch_size=512)

    def mean_elbo(self, x, seed=0):
        """Mean single-sample bound (nats)."""
        seed = tf.constant([seed, 2], tf.int32)
        return mean_of_batches(lambda x: self._elbo_fn(x, seed), x, batch_size=512)


def _timings(trainer_secs):
    """(steady seconds per run, one-off seconds) from one Trainer's per-run wall times:
    the first run also pays tracing / compilation."""
    if len(trainer_secs) < 2:
        return float(trainer_secs[0]), float("nan")
    steady = float(np.median(trainer_secs[1:]))
    return steady, float(trainer_secs[0] - steady)


def run_table2(args):
    rows, total = [], len(args.psis) * len(args.dims) * len(args.augments)
    for b in args.augments:
        for dim in args.dims:
            trainer = Trainer(dim, b, 256, flow_seed=args.seed)
            fit_secs, eval_secs, cells = [], [], []
            for psi in args.psis:
                x_train = datasets.gaussian_power(2048, dim, psi, seed=args.seed)
                x_test = datasets.gaussian_power(2048, dim, psi, seed=args.seed + 1000)
                test, trn = [], []
                for run in range(args.runs):
                    seed = args.seed + 100 * psi + run
                    fit_secs.append(trainer.fit(x_train, args.epochs, seed))
                    start = time.perf_counter()
                    test.append(trainer.log_lik(x_test, seed=seed))
                    trn.append(trainer.log_lik(x_train, seed=seed))
                    eval_secs.append(time.perf_counter() - start)
                    print(f"psi={psi} D={dim} B={b} run={run} seed={seed}: test {test[-1]:.3f} "
                          f"train {trn[-1]:.3f} loss {trainer.last_loss:.3f} fit "
                          f"{fit_secs[-1]:.1f}s eval {eval_secs[-1]:.1f}s", flush=True)
                mean, half = ci95(test)
                exact = EXACT_PER_DIM[psi] * dim
                thesis = THESIS_TABLE2[(psi, dim)][b]
                cells.append({"psi": psi, "D": dim, "B": b, "thesis best": thesis,
                              "best test": max(test), "mean test": mean, "95% +-": half,
                              "mean train": float(np.mean(trn)), "exact E log p": exact,
                              "thesis - exact": thesis - exact, "runs": len(test),
                              "params": count_parameters(trainer.model), "test per run": test,
                              "train per run": trn})
            train_s, compile_s = _timings(fit_secs)
            eval_s, eval_compile_s = _timings(eval_secs)
            for cell in cells:
                cell.update({"train s/run": train_s, "eval s/run": eval_s,
                             "compile s": compile_s + eval_compile_s})
            rows += cells
            rows.sort(key=lambda r: (r["psi"], r["D"], r["B"]))
            _write(args, "augmentation_table2", "Table 2: log-likelihood of N(0, I)^psi (nats)",
                   rows, ["psi", "D", "B", "thesis best", "best test", "mean test", "95% +-",
                          "mean train", "exact E log p", "thesis - exact", "runs",
                          "train s/run", "eval s/run", "compile s"],
                   f"{len(rows)} of {total} (psi, D, B) cells. {args.runs} runs per cell "
                   f"(thesis: 10), {args.epochs} epochs of 8 steps (batch 256) for every cell "
                   "(thesis: 1024), Adam 1e-3, conditioners 32-32, S = 200, 2048 training "
                   "and 2048 held-out test points (test: --seed + 1000). 'best test' is the "
                   "best of the runs (the thesis' statistic), 'mean test' +- the Student-t "
                   "95% half-width over runs; 'mean train' is the same estimate on the "
                   "training points. 'exact E log p' is the expected log-density of the data "
                   "distribution itself (minus its differential entropy): no normalised "
                   "model exceeds it on test data in expectation. Seconds are wall time at "
                   "nice 10 on a shared machine: 'train s/run' the median fit of one run, "
                   "'compile s' the one-off tracing + XLA compilation of the (D, B) model "
                   "(first run's excess), paid once per (D, B) for all psi and runs.")
            _plot_table2(args, rows)


def run_table2_single(args):
    """One Table 2 run (`--psis`, `--dims`, `--augments` one value each, run `--run`), with the
    per-point test log-likelihoods: the mean, the worst test points and the mean without the
    worst one (a collapsed run is one point, or a model)."""
    (psi,), (dim,), (b,) = args.psis, args.dims, args.augments
    trainer = Trainer(dim, b, 256, flow_seed=args.seed)
    x_train = datasets.gaussian_power(2048, dim, psi, seed=args.seed)
    x_test = datasets.gaussian_power(2048, dim, psi, seed=args.seed + 1000)
    seed = args.seed + 100 * psi + args.run
    fit_s = trainer.fit(x_train, args.epochs, seed)
    trainer.log_lik(x_test[:2], seed=seed)  # builds the evaluation function
    fn = trainer._log_prob_fns[200]
    lp = fn(tf.constant(x_test), tf.constant([seed, 1], tf.int32)).numpy()
    train = trainer.log_lik(x_train, seed=seed)
    worst = np.argsort(lp)[:5]
    rows = [{"psi": psi, "D": dim, "B": b, "run": args.run, "seed": seed,
             "final loss": trainer.last_loss, "mean test": float(lp.mean()),
             "mean test without worst point": float(np.delete(lp, worst[0]).mean()),
             "mean train": train, "worst test rows": [int(i) for i in worst],
             "their log-lik": [float(v) for v in lp[worst]],
             "their max abs(x)": [float(np.abs(x_test[i]).max()) for i in worst],
             "train max abs(x)": float(np.abs(x_train).max()), "fit s": fit_s}]
    print(rows[0], flush=True)
    _write(args, f"augmentation_run_psi{psi}_D{dim}_B{b}_run{args.run}",
           "One Table 2 run, per test point", rows,
           ["psi", "D", "B", "run", "seed", "final loss", "mean test",
            "mean test without worst point", "mean train", "worst test rows", "their log-lik",
            "their max abs(x)", "train max abs(x)"],
           f"{args.epochs} epochs, S = 200, 2048 training / 2048 test points, the Table 2 "
           "protocol for one run (seed --seed + 100 psi + run, as in `table2`).")


def _plot_table2(args, rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    psis = [psi for psi in args.psis if any(row["psi"] == psi for row in rows)]
    fig, axes = plt.subplots(1, len(psis), figsize=(4.2 * len(psis), 3.4))
    for ax, psi in zip(np.atleast_1d(axes), psis, strict=True):
        for dim in args.dims:
            r = sorted((row for row in rows if row["psi"] == psi and row["D"] == dim),
                       key=lambda row: row["B"])
            if not r:
                continue
            bs = [row["B"] for row in r]
            # Median and range over runs: one collapsed run must not hide the others.
            runs = [np.asarray(row["test per run"]) for row in r]
            line, = ax.plot(bs, [np.median(v) for v in runs], "o-",
                            label=f"D={dim} ours (median, range of runs)")
            ax.fill_between(bs, [v.min() for v in runs], [v.max() for v in runs],
                            color=line.get_color(), alpha=0.2)
            ax.plot(range(5), THESIS_TABLE2[(psi, dim)], "x--", color=line.get_color(),
                    label=f"D={dim} thesis (best of 10)")
            ax.axhline(EXACT_PER_DIM[psi] * dim, color=line.get_color(), lw=0.8, ls=":")
        # Collapsed runs (tens of thousands of nats below) would flatten the panel: clip.
        shown = [v for row in rows if row["psi"] == psi
                 for v in (np.median(row["test per run"]), row["thesis best"])]
        ax.set_ylim(min(shown) - 1.5, max(shown) + 0.5)
        ax.set_title(f"psi = {psi} (dotted: exact E log p)")
        ax.set_xlabel("B (auxiliary dimensions)")
        ax.set_ylabel("test log-likelihood (nats)")
    np.atleast_1d(axes)[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(os.path.join(args.img, "augmentation_table2.png"), dpi=110)
    plt.close(fig)


def replot_table2(args):
    """Redraws the Table 2 plot from the JSON files of several `table2` runs (e.g. B in
    {0, 2, 4} and B in {1, 3} run separately)."""
    import json
    rows = []
    for path in args.inputs:
        with open(path) as f:
            rows += json.load(f)["rows"]
    if not rows:
        raise SystemExit(f"no Table 2 rows in {args.inputs}")
    cells = [(row["psi"], row["D"], row["B"]) for row in rows]
    if len(set(cells)) != len(cells):
        raise SystemExit("the --inputs files share (psi, D, B) cells; pass disjoint runs")
    _plot_table2(args, rows)
    print(f"{len(rows)} cells -> {os.path.join(args.img, 'augmentation_table2.png')}")


def run_moons(args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x_train = datasets.two_moons(2048, seed=args.seed, noise=0.05)
    x_test = datasets.two_moons(2048, seed=args.seed + 1000, noise=0.05)
    rows, best_weights = [], {}
    for b in args.augments:
        trainer = Trainer(2, b, 64, flow_seed=args.seed)
        test, secs = [], []
        for run in range(args.runs):
            seed = args.seed + run
            secs.append(trainer.fit(x_train, args.epochs, seed))
            test.append(trainer.log_lik(x_test, seed=seed))
            if test[-1] == max(test):
                best_weights[b] = trainer.model.get_weights()
        trainer.model.set_weights(best_weights[b])
        best_weights[b] = trainer.model.sample(2000, seed=(b, 9)).numpy()
        mean, half = ci95(test)
        train_s, compile_s = _timings(secs)
        rows.append({"B": b, "best test": max(test), "mean test": mean, "95% +-": half,
                     "train s/run": train_s, "compile s": compile_s, "test per run": test})
        print(rows[-1], flush=True)
    _write(args, "augmentation_moons", "Table 3 protocol: two moons log-likelihood (nats)", rows,
           ["B", "best test", "mean test", "95% +-", "train s/run", "compile s"],
           f"{args.runs} runs per B (thesis: 10), {args.epochs} epochs (thesis: 1024), batch "
           "64, S = 200, 2048 training / 2048 test points, noise 0.05. The thesis' Table 3 "
           "values are not in its text (only the caption survives), so no side-by-side.")
    fig, axes = plt.subplots(1, len(best_weights), figsize=(2.6 * len(best_weights), 2.8))
    for ax, (b, s) in zip(np.atleast_1d(axes), sorted(best_weights.items()), strict=True):
        ax.scatter(s[:, 0], s[:, 1], s=1, alpha=0.4)
        ax.set_title(f"B = {b}")
        ax.set_xlim(-4, 4)
        ax.set_ylim(-4, 4)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(os.path.join(args.img, "augmentation_moons_samples.png"), dpi=110)
    plt.close(fig)


def run_proposal(args):
    tasks = {"power3": ("N(0,I)^3, D=2", datasets.gaussian_power(2048, 2, 3, seed=args.seed),
                        datasets.gaussian_power(2048, 2, 3, seed=args.seed + 1000)),
             "moons": ("two moons", datasets.two_moons(2048, seed=args.seed, noise=0.05),
                       datasets.two_moons(2048, seed=args.seed + 1000, noise=0.05))}
    tasks = [tasks[name] for name in args.tasks]
    trainers = {p: Trainer(2, 2, 256, proposal=p, flow_seed=args.seed)
                for p in ("standard_normal", "gaussian")}
    rows = []
    for name, x_train, x_test in tasks:
        for proposal, trainer in trainers.items():
            gaps, lls, elbos = [], [], []
            for run in range(args.runs):
                seed = args.seed + run
                trainer.fit(x_train, args.epochs, seed)
                ll = trainer.log_lik(x_test, num_samples=1000, seed=seed)
                elbo = trainer.mean_elbo(x_test, seed=seed)
                lls.append(ll)
                elbos.append(elbo)
                gaps.append(ll - elbo)
            rows.append({"data": name, "proposal": proposal, "B": 2,
                         "test LL (S=1000)": float(np.mean(lls)),
                         "test ELBO (S=1)": float(np.mean(elbos)),
                         "gap": float(np.mean(gaps)), "gap 95% +-": ci95(gaps)[1]})
            print(rows[-1], flush=True)
    _write(args, "augmentation_proposal", "Learned proposal q(eps | x) vs N(0, I)", rows,
           ["data", "proposal", "B", "test LL (S=1000)", "test ELBO (S=1)", "gap",
            "gap 95% +-"],
           f"Means over {args.runs} runs, {args.epochs} epochs each, batch 256, trained on "
           "the single-sample ELBO. gap = S=1000 estimate minus 1-sample bound (>= 0 up to "
           "noise): how loose the training bound is.")


def _write(args, stem, title, rows, columns, notes):
    command = "python -m benchmarks.augmentation " + " ".join(sys.argv[1:])
    write_results(os.path.join(args.out, f"{stem}.md"), title, command, rows, columns, notes)


def main():
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("experiment",
                   choices=["table2", "moons", "proposal", "table2-plot", "table2-run"])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--dims", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--psis", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--augments", type=int, nargs="+", default=[0, 2, 4, 1, 3],
                   help="values of B, run in this order (all D and psi of one B, then the next)")
    p.add_argument("--img", default="docs/img")
    p.add_argument("--tasks", nargs="+", choices=["power3", "moons"], default=["power3"],
                   help="data sets of the proposal experiment")
    p.add_argument("--jit", action="store_true", help="compile training and evaluation with XLA")
    p.add_argument("--run", type=int, default=0, help="table2-run: the run index (its seed)")
    p.add_argument("--inputs", nargs="+", default=[],
                   help="table2-plot: JSON files written by table2 runs")
    args = p.parse_args()
    for name in ("epochs", "runs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be a positive integer; got {getattr(args, name)}.")
    if args.experiment == "table2-run" and not (
            len(args.psis) == len(args.dims) == len(args.augments) == 1):
        p.error("table2-run trains one cell: give one value each to --psis, --dims, --augments.")
    if args.experiment in ("table2", "table2-run"):
        bad = [f"{name}={v}" for name, values, ok in (
            ("--psis", args.psis, (1, 2, 3)), ("--dims", args.dims, (2, 3, 4)),
            ("--augments", args.augments, (0, 1, 2, 3, 4))) for v in values if v not in ok]
        if bad:
            p.error("table2 covers the thesis' grid psi in {1, 2, 3}, D in {2, 3, 4}, "
                    f"B in {{0, ..., 4}}; got {', '.join(bad)}.")
    _JIT[0] = args.jit
    os.makedirs(args.img, exist_ok=True)
    {"table2": run_table2, "moons": run_moons, "proposal": run_proposal,
     "table2-plot": replot_table2, "table2-run": run_table2_single}[args.experiment](args)


if __name__ == "__main__":
    main()
