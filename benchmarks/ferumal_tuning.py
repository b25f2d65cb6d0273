"""The Ferumal paper's toy tuning protocol: Ferumal flow vs Glow, both tuned on validation NLL.

English, Kirchler & Lippert (ICLR 2024), Table 1: the paper tuned the Ferumal
flow's kernel length scale (coarse grid, then a finer grid around the best,
then random draws within it), Adam's beta1/beta2 and the learning-rate decay
(StepLR or cosine). This script runs that protocol per toy (line, pinwheel,
two moons; this library's generators, `benchmarks.ferumal_toys.TOYS`), with
the model sizes of `benchmarks/ferumal_toys.py` (Ferumal 4 blocks, N = 200
per layer, 4,824 parameters; Glow 10 steps of (64, 64), 44,260):

Ferumal flow, stage by stage (each stage keeps the best so far by validation
NLL and varies one thing; Adam lr 5e-3 with cosine decay until stage 3):

1. `length_scale`: first the library's default (median heuristic, learned)
   as the reference; then a fixed (not learned) length scale on the coarse
   grid `--coarse`; then `--fine-points` values between the best and its
   coarse neighbours (geometric); then `--random-draws` log-uniform draws
   between the fine neighbours of the best so far; then the best length
   scale as the *initial* value of a learned one.
2. Adam `(beta1, beta2)` from `--betas`.
3. learning rate (`--lr-factors` times the model's default) x decay
   `--schedules` (cosine: to 0.05 lr;
   StepLR: halved after every quarter of the run;
   `benchmarks.ferumal_common.learning_rate_schedule`).

Glow gets the same learning-rate x decay search (stage 3; default betas).

Every search run trains `--search-steps` Adam iterations of batch 200 on
10,000 points (seed 0), with the validation NLL (2,000 points) measured
every `--eval-every` steps and the best one restored; the lowest validation
NLL selects. The selected configuration then trains `--final-steps` (the
paper: 10,000) iterations on each of `--final-seeds` (data and weights), and
its **test** NLL (10,000 points) is reported. Training is the library's
pipeline (`benchmarks.ferumal_common.train_result` -> `tfp_flows.keras.train.fit`).

Every finished run is appended at once to
`<out>/ferumal_tuning_runs/<toy>_<model>.json` (configuration, validation
curve, validation and test NLL, learned length scales, wall time); a rerun of
the same command skips the runs already there, so a killed run resumes. Two
processes may share the work: a run that another live process is training
(its lock file, next to the runs file) is skipped and left to it. `--stage
report` (also run at the end of every invocation) writes
`<out>/ferumal_tuning.md` + `.json` (selected settings, test NLL per seed,
every configuration tried) and `<out>/ferumal_tuning_length_scale.png`
(validation NLL vs length scale, per toy).

Reductions for a small compute budget (each stated in the docs when used):
`--search-steps` below the final budget; `--stop-search-at HH:MM` (no new
search run after that UTC time; the finals use the best found so far);
`--skip fine random learned`; shorter `--betas` / `--lr-factors` lists;
`--earlier-finals docs/results/ferumal_toys.json` (where a model's default
is selected, the seed-0 run of `benchmarks/ferumal_toys.py`, same pipeline,
data and budget, is its seed-0 final). `--stage reference` trains each
model's default at `--final-steps` on `--final-seeds` (the untuned
comparison). The commands run for the docs are on docs/ferumal.md ("Toys
with the paper's tuning protocol"); the full protocol is

    python benchmarks/ferumal_tuning.py --search-steps 10000 --out docs/results
"""
# ruff: noqa: I001  (benchmarks.common must set the TF environment before TF is imported)

import hashlib
import json
import math
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common, ferumal_common  # noqa: E402
from benchmarks.ferumal_toys import MODELS, PAPER, TOYS  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from tfp_flows.keras import NonFiniteLossError  # noqa: E402
from tfp_flows.keras.train import count_parameters, evaluate  # noqa: E402

BATCH = 200
DEFAULT_BETAS = (0.9, 0.999)
# Test-only sizes (`--tiny-models`): a few seconds per run.
TINY = {"ferumal": dict(event_size=2, num_blocks=1, num_inducing=8),
        "glow": dict(event_size=2, num_layers=1, hidden_units=(8,))}


def _pairs(text):
    try:
        b1, b2 = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--betas entries must be 'beta1,beta2'; got {text!r}") from None
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"--betas entries must lie in [0, 1); got {text!r}")
    return (b1, b2)


def parse_args(argv):
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--toys", nargs="+", default=list(TOYS), choices=list(TOYS))
    p.add_argument("--stage", choices=("all", "search", "final", "reference", "report"),
                   default="all",
                   help="search, final (needs the search's runs), both (all), reference (each "
                        "model's default at --final-steps per seed), or only the report")
    p.add_argument("--search-steps", type=int, default=2000)
    p.add_argument("--final-steps", type=int, default=10000, help="paper: 10,000")
    p.add_argument("--final-seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--eval-every", type=int, default=50,
                   help="steps between validation NLLs (50 = one pass over 10,000 points)")
    p.add_argument("--coarse", type=float, nargs="+", default=[0.05, 0.2, 0.8, 3.2],
                   help="coarse grid of fixed length scales (after ActNorm: unit-variance "
                        "inputs)")
    p.add_argument("--fine-points", type=int, default=2,
                   help="fine-grid values around the best coarse one (even)")
    p.add_argument("--random-draws", type=int, default=2)
    p.add_argument("--skip", nargs="+", default=[], choices=("fine", "random", "learned"),
                   help="Ferumal length-scale steps left out (a stated reduction of the "
                        "protocol): the fine grid, the random draws, the learned-from-best run")
    p.add_argument("--betas", nargs="+", default=["0.9,0.999", "0.5,0.9", "0.95,0.9999"],
                   help="Adam (beta1, beta2) pairs of stage 2")
    p.add_argument("--lr-factors", type=float, nargs="+", default=[1.0, 0.5, 2.0],
                   help="learning rates searched, as multiples of each model's default "
                        "(Ferumal 5e-3, Glow 1e-3)")
    p.add_argument("--schedules", nargs="+", default=list(ferumal_common.SCHEDULES),
                   choices=ferumal_common.SCHEDULES)
    p.add_argument("--num-train", type=int, default=10000)
    p.add_argument("--num-val", type=int, default=2000)
    p.add_argument("--num-test", type=int, default=10000)
    p.add_argument("--stop-search-at", default=None, metavar="HH:MM",
                   help="UTC time after which no new search run starts (the finals still "
                        "run, on the best configuration found by then)")
    p.add_argument("--earlier-finals", default=None, metavar="JSON",
                   help="results JSON of benchmarks/ferumal_toys.py: where the search "
                        "selects a model's default configuration, its run there is that "
                        "seed's final (starred)")
    p.add_argument("--no-jit", action="store_true", help="no XLA (faster for tiny budgets)")
    p.add_argument("--tiny-models", action="store_true", help="test-sized models")
    args = p.parse_args(argv)
    for name in ("search_steps", "final_steps", "eval_every", "num_train", "num_val",
                 "num_test"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer; got "
                    f"{getattr(args, name)}")
    for name in ("fine_points", "random_draws"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be a non-negative integer; got "
                    f"{getattr(args, name)}")
    if args.fine_points % 2:
        p.error(f"--fine-points must be even; got {args.fine_points}")
    if min(args.coarse) <= 0 or min(args.lr_factors) <= 0:
        p.error("--coarse and --lr-factors values must be positive")
    if args.stop_search_at is not None and not re.fullmatch(
            r"([01][0-9]|2[0-3]):[0-5][0-9]", args.stop_search_at):
        p.error(f"--stop-search-at must be HH:MM (UTC); got {args.stop_search_at!r}")
    try:
        args.betas = [_pairs(b) for b in args.betas]
    except ValueError as e:
        p.error(str(e))
    if DEFAULT_BETAS not in args.betas:
        args.betas.insert(0, DEFAULT_BETAS)
    return args


# --------------------------------------------------------------------------- runs on disk

def _runs_path(out, toy, model):
    return os.path.join(out, "ferumal_tuning_runs", f"{toy}_{model}.json")


def load_runs(out, toy, model):
    path = _runs_path(out, toy, model)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)


def _save_runs(out, toy, model, runs):
    path = _runs_path(out, toy, model)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(runs, f, indent=1, default=float)
    os.replace(path + ".tmp", path)


def _config(length_scale=None, learn=True, betas=DEFAULT_BETAS, lr=None, schedule="cosine"):
    return {"length_scale": length_scale, "learn_length_scale": learn, "beta_1": betas[0],
            "beta_2": betas[1], "lr": lr, "schedule": schedule}


def _same(run, config, steps, seed):
    return (run["steps"] == steps and run["seed"] == seed
            and all(run["config"][k] == v for k, v in config.items()))


class Runner:
    """Trains (or finds on disk) one configuration of one model on one toy."""

    def __init__(self, args, toy, model):
        self.args, self.toy, self.model = args, toy, model
        self.runs = load_runs(args.out, toy, model)
        self._data = {}

    def data(self, seed):
        if seed not in self._data:
            make = TOYS[self.toy]
            self._data[seed] = (make(self.args.num_train, seed=seed),
                                make(self.args.num_val, seed=seed + 1),
                                make(self.args.num_test, seed=seed + 2))
        return self._data[seed]

    def run(self, config, stage, steps, seed=0):
        self.runs = load_runs(self.args.out, self.toy, self.model)  # another process's too
        for r in self.runs:
            if _same(r, config, steps, seed):
                return r
        if stage != "final" and self.args.stop_search_at and _past(self.args.stop_search_at):
            raise OutOfTime(stage)
        lock = _lock_path(self.args.out, self.toy, self.model, config, steps, seed)
        if _locked(lock):  # another process is training this run; it saves it when done
            print(f"{self.toy}/{self.model} {config} seed {seed}: run by process "
                  f"{open(lock).read()}; skipped here", flush=True)
            return None
        with open(lock, "w") as f:
            f.write(str(os.getpid()))
        record = {"toy": self.toy, "model": self.model, "stage": stage, "steps": steps,
                  "seed": seed, "config": dict(config)}
        try:
            record.update(train_one(self.args, self.model, config, self.data(seed), steps,
                                    seed))
            self.runs = load_runs(self.args.out, self.toy, self.model) + [record]
            _save_runs(self.args.out, self.toy, self.model, self.runs)
        finally:
            os.remove(lock)
        print({k: v for k, v in record.items() if k not in ("val_curve",)}, flush=True)
        return record


def _lock_path(out, toy, model, config, steps, seed):
    key = json.dumps([config, steps, seed], sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    os.makedirs(os.path.dirname(_runs_path(out, toy, model)), exist_ok=True)
    return _runs_path(out, toy, model) + f".{digest}.lock"


def _locked(lock):
    """Whether `lock` names a live process (a lock left by a killed run does not count)."""
    try:
        with open(lock) as f:
            os.kill(int(f.read()), 0)
    except (OSError, ValueError):
        return False
    return True


class OutOfTime(Exception):
    """`--stop-search-at` has passed: no new search run starts."""


def _past(hhmm):
    now = time.gmtime()
    return now.tm_hour * 60 + now.tm_min >= int(hhmm[:2]) * 60 + int(hhmm[3:])


def train_one(args, model, config, data, steps, seed):
    """Trains one configuration through the library's pipeline; returns the measured fields."""
    flow, kwargs, _ = MODELS[model]
    kwargs = dict(TINY[model] if args.tiny_models else kwargs)
    if model == "ferumal":
        kwargs.update(length_scale=config["length_scale"],
                      learn_length_scale=config["learn_length_scale"])
    x_train, x_val, x_test = data
    eval_every = min(args.eval_every, steps)
    start = time.perf_counter()
    try:
        result = ferumal_common.train_result(
            flow, kwargs, x_train, x_val, steps, BATCH, config["lr"], patience=steps,
            seed=seed, jit_compile=not args.no_jit, steps_per_execution=eval_every,
            validation_batch_size=len(x_val), eval_every=eval_every,
            schedule=config["schedule"], beta_1=config["beta_1"], beta_2=config["beta_2"])
    except NonFiniteLossError as e:  # a diverged configuration: recorded, never selected
        return {"status": f"non-finite loss: {str(e).splitlines()[0][:200]}",
                "val_nll": math.inf, "test_nll": math.inf,
                "seconds": time.perf_counter() - start}
    m = result.model
    val_nll, test_nll = float(evaluate(m, x_val).nll), float(evaluate(m, x_test).nll)
    if not np.isfinite(val_nll):
        val_nll = test_nll = math.inf
    return {"status": "ok", "val_nll": val_nll, "test_nll": test_nll,
            "best_step": result.best_epoch * eval_every,
            "val_curve": result.history.get("val_loss", []), "params": count_parameters(m),
            "seconds": time.perf_counter() - start,
            "learned_length_scales": [float(np.exp(w.numpy())) for w in m.weights
                                      if "log_length_scale" in w.path]}


def _best(records):
    return min(records, key=lambda r: r["val_nll"])


def _fine_factors(coarse, best_value, points):
    """Geometric factors of the fine grid: between the best and its coarse neighbours."""
    grid = sorted(coarse)
    i = grid.index(best_value) if best_value in grid else None
    if len(grid) > 1 and i is not None:
        lo = grid[i - 1] if i > 0 else grid[i] ** 2 / grid[i + 1]
        hi = grid[i + 1] if i + 1 < len(grid) else grid[i] ** 2 / grid[i - 1]
    else:
        lo, hi = best_value / math.sqrt(10), best_value * math.sqrt(10)
    half = points // 2
    down = [(lo / best_value) ** (j / (half + 1)) for j in range(half, 0, -1)]
    up = [(hi / best_value) ** (j / (half + 1)) for j in range(1, half + 1)]
    return down + up, (lo / best_value) ** (1 / (half + 1)), (hi / best_value) ** (1 / (half + 1))


def searches(args, pairs):
    """Runs the protocol's search for every `(toy, model)`, one run of each in turn.

    Round robin, so that `--stop-search-at` leaves every toy searched to the
    same depth; a search past that time stops before its next new run.
    """
    active = [(toy, model, _search(args, Runner(args, toy, model), toy, model))
              for toy, model in pairs]
    while active:
        for item in list(active):
            try:
                next(item[2])
            except StopIteration:
                active.remove(item)
            except OutOfTime as e:
                print(f"--stop-search-at {args.stop_search_at} passed: {item[0]}/{item[1]} "
                      f"search stopped before stage {e}", flush=True)
                active.remove(item)


def _runs(runner, configs, stage, steps):
    """Runs `configs` (a generator: yields before every run not yet on disk)."""
    out = []
    for config in configs:
        if not any(_same(r, config, steps, 0) for r in runner.runs):
            yield
        record = runner.run(config, stage, steps)
        if record is not None:  # None: another process is running it
            out.append(record)
    return out


def _search(args, runner, toy, model):
    steps = args.search_steps
    default_lr = MODELS[model][2]
    if model == "ferumal":
        # The library's default first: the reference every tuned setting must beat.
        stage1 = yield from _runs(runner, [_config(length_scale=None, learn=True,
                                                   lr=default_lr)], "1e library default", steps)
        coarse = yield from _runs(runner, [_config(length_scale=ls, learn=False, lr=default_lr)
                                           for ls in args.coarse], "1a coarse", steps)
        stage1 += coarse
        l_best = _best(coarse)["config"]["length_scale"]
        factors, f_lo, f_hi = _fine_factors(args.coarse, l_best, args.fine_points)
        stage1 += yield from _runs(runner, [
            _config(length_scale=float(f"{l_best * f:.4g}"), learn=False, lr=default_lr)
            for f in factors if "fine" not in args.skip], "1b fine", steps)
        l_best = _best(stage1[1:])["config"]["length_scale"]
        rng = np.random.default_rng(list(TOYS).index(toy))
        draws = np.exp(rng.uniform(np.log(l_best * f_lo), np.log(l_best * f_hi),
                                   args.random_draws))
        stage1 += yield from _runs(runner, [
            _config(length_scale=float(f"{d:.4g}"), learn=False, lr=default_lr)
            for d in draws if "random" not in args.skip], "1c random", steps)
        l_best = _best(stage1[1:])["config"]["length_scale"]
        stage1 += yield from _runs(runner, [_config(length_scale=l_best, learn=True,
                                                    lr=default_lr)] * ("learned" not in args.skip),
                                   "1d learned from best", steps)
        best = _best(stage1)
        ls = (best["config"]["length_scale"], best["config"]["learn_length_scale"])
        stage2 = [best] + (yield from _runs(runner, [_config(*ls, betas=b, lr=default_lr)
                                                     for b in args.betas], "2 betas", steps))
        best = _best(stage2)
        betas = (best["config"]["beta_1"], best["config"]["beta_2"])
    else:
        ls, betas, best = (None, True), DEFAULT_BETAS, None
    stage3 = [] if best is None else [best]
    stage3 += yield from _runs(runner, [
        _config(*ls, betas=betas, lr=float(f"{default_lr * f:.4g}"), schedule=s)
        for f in args.lr_factors for s in args.schedules], "3 lr x decay", steps)
    return _best(stage3)


def selected(runs, search_steps):
    """The selected search run: the lowest validation NLL among the search runs (seed 0)."""
    pool = [r for r in runs if r["steps"] == search_steps and r["seed"] == 0
            and not r["stage"].startswith("final")]
    return _best(pool) if pool else None


def finals(args, pairs):
    """The selected configuration of every `(toy, model)` at `--final-steps`, seed by seed."""
    runners = {}
    for toy, model in pairs:
        runners[toy, model] = runner = Runner(args, toy, model)
        if selected(runner.runs, args.search_steps) is None:
            raise SystemExit(f"no search runs for {toy}/{model} at --search-steps "
                             f"{args.search_steps}: run --stage search first")
    for seed in args.final_seeds:  # every toy's first seed before any second seed
        for (toy, model), runner in runners.items():
            choice = selected(runner.runs, args.search_steps)
            earlier = earlier_finals(args, toy, model, choice["config"], set())
            if any(r["seed"] == seed for r in earlier):
                print(f"{toy}/{model} seed {seed}: the selected configuration is the default, "
                      f"run in {args.earlier_finals}; not rerun", flush=True)
                continue
            runner.run(choice["config"], "final", args.final_steps, seed)


def references(args, pairs):
    """Each model's default configuration at `--final-steps` per seed (the untuned reference)."""
    for seed in args.final_seeds:
        for toy, model in pairs:
            default = _config(lr=MODELS[model][2])
            if any(r["seed"] == seed for r in earlier_finals(args, toy, model, default, set())):
                continue
            Runner(args, toy, model).run(default, "reference (default)", args.final_steps, seed)


def _default_tests(args, toy, model, runs):
    default = _config(lr=MODELS[model][2])
    found = {r["seed"]: r["test_nll"] for r in reversed(runs)
             if r["steps"] == args.final_steps and r["config"] == default}
    for r in earlier_finals(args, toy, model, default, set(found)):
        found[r["seed"]] = r["test_nll"]
    return " / ".join(f"{found[k]:.3f}" for k in sorted(found)) or "-", \
        "/".join(str(k) for k in sorted(found))


# --------------------------------------------------------------------------- report

def earlier_finals(args, toy, model, config, have_seeds):
    """Finals of the *default* configuration from `--earlier-finals` (a ferumal_toys JSON).

    `benchmarks/ferumal_toys.py` trains each model with its defaults (this
    script's configuration `_config(lr=<default>)`, cosine decay) through the
    same `ferumal_common` pipeline on the same data seeds, validating every 50
    steps (one pass over 10,000 points) and restoring the best. When the
    search selects exactly that configuration, its run at `--final-steps` there
    counts as this seed's final (marked `earlier` and starred in the table).
    """
    if not args.earlier_finals or config != _config(lr=MODELS[model][2]):
        return []
    with open(args.earlier_finals) as f:
        saved = json.load(f)
    seed = int(re.search(r"--seed (\d+)", saved["command"]).group(1)) \
        if "--seed" in saved["command"] else 0
    if seed in have_seeds or args.num_train != 10000 or args.eval_every != 50:
        return []
    return [{"seed": seed, "steps": args.final_steps, "test_nll": float(row["test NLL"]),
             "params": row["params"], "earlier": args.earlier_finals}
            for row in saved["rows"] if row["data"] == toy and row["model"] == model
            and row["epochs"] * 50 == args.final_steps]


def _describe(config, model):
    text = f"lr {config['lr']:g} {config['schedule']}"
    if model == "ferumal":
        ls = "median" if config["length_scale"] is None else f"{config['length_scale']:g}"
        text = (f"l {ls} ({'learned' if config['learn_length_scale'] else 'fixed'}), "
                f"betas ({config['beta_1']:g}, {config['beta_2']:g}), " + text)
    return text


def report(args, argv):
    summary, tried = [], []
    fig, axes = plt.subplots(1, len(args.toys), figsize=(3.6 * len(args.toys), 3.2),
                             squeeze=False)
    for t, toy in enumerate(args.toys):
        for model in MODELS:
            runs = load_runs(args.out, toy, model)
            for r in runs:
                tried.append({"toy": toy, "model": model, "stage": r["stage"],
                              "seed": r["seed"], "steps": r["steps"],
                              "configuration": _describe(r["config"], model),
                              "val NLL": r["val_nll"], "test NLL": r["test_nll"],
                              "best step": r.get("best_step", ""),
                              "learned l": "/".join(f"{v:.2g}" for v in
                                                    r.get("learned_length_scales", [])[:8]),
                              "s": round(r["seconds"], 1), "status": r["status"]})
            choice = selected(runs, args.search_steps)
            if choice is None:
                continue
            finals = list({r["seed"]: r for r in reversed(runs)  # the first run of a seed
                           if r["stage"] == "final" and r["steps"] == args.final_steps
                           and r["config"] == choice["config"]}.values())
            finals += earlier_finals(args, toy, model, choice["config"],
                                     {r["seed"] for r in finals})
            finals.sort(key=lambda r: r["seed"])
            tests = [r["test_nll"] for r in finals]
            paper = PAPER[toy][0 if model == "ferumal" else 2]
            summary.append({
                "data": toy, "model": model, "selected": _describe(choice["config"], model),
                "search runs": sum(r["seed"] == 0 and r["steps"] == args.search_steps
                                   and r["stage"] != "final" for r in runs),
                "search val NLL": choice["val_nll"],
                "final seeds": "/".join(str(r["seed"]) + ("*" if r.get("earlier") else "")
                                        for r in finals) or "not run",
                "test NLL per seed": " / ".join(f"{v:.3f}" for v in tests) or "",
                "test NLL mean": float(np.mean(tests)) if tests else float("nan"),
                "default test NLL (seeds)": "{} ({})".format(*_default_tests(args, toy, model,
                                                                            runs)),
                "paper NLL": paper, "params": (finals or [choice])[0].get("params", "")})
        ferumal_runs = [r for r in load_runs(args.out, toy, "ferumal")
                        if r["stage"].startswith("1") and r["steps"] == args.search_steps
                        and r["seed"] == 0 and np.isfinite(r["val_nll"])]
        ax = axes[0, t]
        fixed = sorted((r["config"]["length_scale"], r["val_nll"]) for r in ferumal_runs
                       if not r["config"]["learn_length_scale"])
        if fixed:
            ax.plot([v[0] for v in fixed], [v[1] for v in fixed], "o-", label="fixed l")
        for r in ferumal_runs:
            if r["config"]["learn_length_scale"] and r["config"]["length_scale"] is not None:
                ax.plot(r["config"]["length_scale"], r["val_nll"], "s", color="C1",
                        label="learned, from l")
            elif r["config"]["learn_length_scale"]:
                ax.axhline(r["val_nll"], color="C2", ls="--", label="default (median, learned)")
        glow = selected(load_runs(args.out, toy, "glow"), args.search_steps)
        if glow is not None:
            ax.axhline(glow["val_nll"], color="C3", ls=":", label="Glow (selected)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ticks = sorted({r["config"]["length_scale"] for r in ferumal_runs  # grid values only:
                        if r["stage"] in ("1a coarse", "1b fine")})   # random draws crowd them
        if ticks:
            ax.set_xticks(ticks, [f"{v:g}" for v in ticks], fontsize=7)
        ax.set_xlabel("length scale l")
        ax.set_ylabel("validation NLL (nats)")
        ax.set_title(f"{toy}, {args.search_steps} steps", fontsize=9)
        if ferumal_runs:
            ax.legend(fontsize=7)
    fig.tight_layout()
    png = os.path.join(args.out, "ferumal_tuning_length_scale.png")
    os.makedirs(args.out, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    starred = ("* seed 0 is the run of the same (default) configuration in "
               f"`{args.earlier_finals}` (benchmarks/ferumal_toys.py: same pipeline, data seeds "
               f"and {args.final_steps} iterations), not rerun here. " if any(
                   "*" in row["final seeds"] for row in summary) else "")
    notes = (starred + f"Search: {args.search_steps} iterations of batch {BATCH} per configuration "
             f"(seed 0), selected on validation NLL ({args.num_val} points, measured every "
             f"{args.eval_every} steps, best restored); final: the selected configuration at "
             f"{args.final_steps} iterations (paper: 10,000) per seed, test NLL on "
             f"{args.num_test} points. Length-scale plot: `{png}`. The runs may come from "
             "several invocations (e.g. one process per model, a later `--stage final`); every "
             f"run's record is in `{os.path.join(args.out, 'ferumal_tuning_runs')}/`.\n\n"
             "### Every configuration tried\n\n"
             + common.markdown_table(tried, ["toy", "model", "stage", "seed", "steps",
                                             "configuration", "val NLL", "test NLL",
                                             "best step", "learned l", "s", "status"]))
    path = os.path.join(args.out, "ferumal_tuning.md")
    common.write_results(path, "Ferumal flow vs Glow on 2-D toys, tuned (the paper's protocol)",
                         "python benchmarks/ferumal_tuning.py " + " ".join(argv), summary,
                         ["data", "model", "selected", "search runs", "search val NLL",
                          "final seeds", "test NLL per seed", "test NLL mean",
                          "default test NLL (seeds)", "paper NLL", "params"], notes)
    json_path = os.path.splitext(path)[0] + ".json"
    with open(json_path) as f:
        saved = json.load(f)
    saved["runs"] = tried
    with open(json_path, "w") as f:
        json.dump(saved, f, indent=1, default=float)
    return summary


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    pairs = [(toy, model) for toy in args.toys for model in args.models]
    if args.stage in ("all", "search"):
        searches(args, pairs)
    if args.stage in ("all", "final"):
        finals(args, pairs)
    if args.stage == "reference":
        references(args, pairs)
    return report(args, argv)


if __name__ == "__main__":
    main()
