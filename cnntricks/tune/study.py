"""`cnntricks tune`: a hyper-parameter search on Optuna over any config keys (tune/space.py).

Every trial is a normal run directory (OUT/trials/trial-NNNN) trained by `session.train`; its value
is the run's best validation accuracy (maximized), never the test split's. With `--folds k` a trial
is a k-fold cross-validation instead (OUT/trials/trial-NNNN/fold-i, data.folds=k, data.fold=i, one
split seed for every trial) and its value the folds' mean: the seed's "top models discovered during
cross-validation", whose out-of-fold predictions `cnntricks ensemble --study OUT --fusion stack` fits on. The TPE sampler
proposes; the pruner (median, or successive halving) stops a trial whose per-epoch validation
accuracy falls behind (a `TrialReporter` plug-in reports each epoch and stops the run when told).
A trial that diverges is worth 0.

Storage: SQLite in OUT/study.db for one process; for several local workers, Optuna's journal file
(OUT/study.journal: SQLite locks up under several writers); `--storage postgresql://...` when
workers on several machines share one study. OUT/tune.json records the study (storage, name,
config, overrides, space, target) so `cnntricks tune` on the same OUT continues it and
`cnntricks ensemble --study OUT --top K` finds its best runs. A search killed mid-trial continues:
the trial that was running (no live process holds its run) is marked failed and its parameters are
tried again first.
"""
from __future__ import annotations

import datetime
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from cnntricks import config as config_module
from cnntricks.config import ConfigError
from cnntricks.rundir import RunDirectoryError, lock_holder, read_json, write_json
from cnntricks.train.plugins import Stop
from cnntricks.tune.space import load_space, overrides_of

TUNE, TRIALS = "tune.json", "trials"
PRUNERS = ("median", "halving", "none")
STALE_SECONDS = 120  # a RUNNING trial without a run directory this long after its start was killed


class TrialReporter:
    """Loop plug-in: reports each epoch's validation accuracy to the trial (at step `offset` + epoch: a
    cross-validated trial's fold i reports after fold i - 1's epochs); stops the run when pruned."""

    def __init__(self, trial, offset: int = 0):
        self.trial, self.offset = trial, offset

    def on_epoch_end(self, trainer):
        value = trainer.state.last_epoch.get("val_acc")
        if value is None:
            return None
        self.trial.report(float(value), self.offset + trainer.state.epoch)
        return Stop("pruned") if self.trial.should_prune() else None


def quiet_optuna():
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def create_pruner(name: str):
    optuna = quiet_optuna()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def storage_url(out_dir: Path, storage: str | None, workers: int, say=print) -> str:
    """--storage as given; else SQLite for one process, Optuna's journal file for several."""
    if storage:
        return storage
    if workers > 1:
        say(f"tune: {workers} workers on one machine: Optuna's journal file storage ({out_dir / 'study.journal'}); "
            f"SQLite locks up under several writers")
        return f"journal:{(out_dir / 'study.journal').resolve()}"
    return f"sqlite:///{(out_dir / 'study.db').resolve()}"


def open_storage(url: str):
    optuna = quiet_optuna()
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        return JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    if url.startswith(("postgresql", "mysql")):  # workers on several machines: Optuna's heartbeat finds the
        # trials of a killed worker (no beat for grace_period seconds), fails them and tries their parameters again
        retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
            optuna.storages.RetryFailedTrialCallback  # the name before Optuna 4.9
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180,
                                              failed_trial_callback=retry(max_retry=1))
        except ImportError as err:
            raise ConfigError(f"--storage {url.split('@')[-1]}: {err} For PostgreSQL: pip install 'psycopg[binary]' "
                              f"(or cnntricks[postgres])") from None
    return url  # sqlite:///...: optuna builds it


def load_study(record: dict, sampler_seed: int | None = None):
    """The study (created on first use). Workers starting together on an empty database race to create
    its tables; the loser tries again once they exist."""
    optuna = quiet_optuna()
    sampler = optuna.samplers.TPESampler(seed=sampler_seed) if sampler_seed is not None else None
    shared = record["storage"].startswith(("postgresql", "mysql"))
    for attempt in range(4):
        try:
            return optuna.create_study(study_name=record["name"], storage=open_storage(record["storage"]),
                                       direction="maximize", load_if_exists=True, sampler=sampler,
                                       pruner=create_pruner(record["pruner"]))
        except Exception as err:  # sqlalchemy's IntegrityError / ProgrammingError: "already exists"
            if not shared or attempt == 3 or "already exists" not in str(err) and "duplicate" not in str(err):
                raise
            time.sleep(0.5 + attempt)


def finished(study) -> int:
    from optuna.trial import TrialState
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def retry_stale(study, out_dir: Path, say=print) -> int:
    """Trials of this folder left RUNNING by a killed search: failed, their parameters enqueued again.
    (A study in a database server is shared with other machines: Optuna's heartbeat does this there.)"""
    from optuna.trial import TrialState
    now = datetime.datetime.now()
    stale = 0
    trials_dir = (out_dir / TRIALS).resolve()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        run = trial.user_attrs.get("run_dir")
        if run is not None and Path(run).parent != trials_dir:
            continue  # another folder's (another machine's) trial
        alive = run is not None and Path(run).exists() and lock_holder(run) is not None
        young = run is None and trial.datetime_start and (now - trial.datetime_start).total_seconds() < STALE_SECONDS
        if alive or young:
            continue
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        stale += 1
    if stale:
        say(f"tune: {stale} trial{'s' if stale != 1 else ''} interrupted by a kill: tried again with the same parameters")
    return stale


def trial_runs(record: dict, overrides: list[str], run_dir: Path) -> list[tuple[list[str], Path]]:
    """The runs of one trial: its config, or with record["folds"] = k one run per fold (run_dir/fold-i)."""
    folds = record.get("folds")
    if not folds:
        return [(overrides, run_dir)]
    return [([*overrides, f"data.folds={folds}", f"data.fold={fold}"], run_dir / f"fold-{fold}")
            for fold in range(folds)]


def objective_for(record: dict, out_dir: Path, say=print):
    """The study's objective: train the trial's config, return its best validation accuracy (with
    folds, the mean over the folds of each fold run's best validation accuracy)."""
    from cnntricks.session import train
    from cnntricks.train.loop import TrainingDiverged
    from cnntricks.tune.space import parse_param
    params = [parse_param(key, spec) for key, spec in record["space"].items()]

    def objective(trial):
        optuna = quiet_optuna()
        overrides = [*record["overrides"], *overrides_of(params, trial)]
        runs = trial_runs(record, overrides, out_dir / TRIALS / f"trial-{trial.number:04d}")
        trial.set_user_attr("run_dir", str(runs[0][1].resolve()))
        trial.set_user_attr("run_dirs", [str(run.resolve()) for _, run in runs])
        values, tests, offset = [], [], 0
        for words, run_dir in runs:
            cfg = config_module.load(record["config"], words)
            try:
                summary = train(cfg, run_dir, progress=False, report=False, callbacks=(TrialReporter(trial, offset),))
            except TrainingDiverged:
                trial.set_user_attr("diverged", True)
                say(f"tune: trial {trial.number} diverged: value 0")
                return 0.0
            offset += config_module.load(run_dir / "config.yaml").train.epochs  # as planned (train.epochs unset: by the data)
            if summary.get("stop_reason") == "pruned":
                say(f"tune: trial {trial.number} pruned at epoch {summary['epochs']}"
                    + (f" of fold {cfg.data.fold}" if record.get("folds") else ""))
                raise optuna.TrialPruned()
            if summary.get("best_val_acc") is None:
                raise ConfigError("tune maximizes the validation accuracy: keep data.val_fraction above 0")
            values.append(float(summary["best_val_acc"]))
            tests.append(summary.get("test_acc"))
        value = sum(values) / len(values)
        trial.set_user_attr("test_acc", sum(tests) / len(tests) if None not in tests else None)
        if len(values) > 1:
            trial.set_user_attr("fold_values", values)
        said = f"{len(values)}-fold mean " if len(values) > 1 else ""
        say(f"tune: trial {trial.number} finished: {said}validation accuracy {100 * value:.2f}% "
            f"({' '.join(overrides_of(params, trial))})")
        return value
    return objective


def print_flush(message: str) -> None:
    print(message, flush=True)


def say_nothing(message: str) -> None:
    pass


def work(record: dict, out_dir: str, worker: int, threads: int | None, say=print_flush) -> None:
    """One worker: trials until the study has record["trials"] finished ones."""
    optuna = quiet_optuna()
    if threads is not None:
        record = {**record, "overrides": [*record["overrides"], f"train.threads={threads}"]}
    study = load_study(record, sampler_seed=record["seed"] + worker)
    limit = optuna.study.MaxTrialsCallback(record["trials"], states=(optuna.trial.TrialState.COMPLETE,
                                                                    optuna.trial.TrialState.PRUNED))
    if finished(study) < record["trials"]:
        study.optimize(objective_for(record, Path(out_dir), say), callbacks=[limit], catch=())


def tune(config_file: str | None, overrides: list[str], space_file: str | Path, out_dir: str | Path, trials: int,
         storage: str | None = None, workers: int = 1, pruner: str = "median", say=print,
         worker_lines: bool = True, folds: int | None = None) -> dict:
    """Run (or continue) the search; returns tune.json's contents with the best trial. Worker processes
    print their trials' lines unless `worker_lines` is False. `folds` = k: every trial is a k-fold
    cross-validation (k runs, data.folds=k), its value the folds' mean validation accuracy."""
    out_dir = Path(out_dir)
    if trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    if folds is not None and folds < 2:
        raise ConfigError(f"--folds must be 2 or more (a cross-validation of one fold is one run), got {folds}")
    if folds is not None and any(word.startswith(("data.folds=", "data.fold=")) for word in overrides):
        raise ConfigError("--folds sets data.folds and data.fold of each trial's runs; drop them from the overrides")
    if pruner not in PRUNERS:
        raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)}, got {pruner!r}")
    config_file = str(Path(config_file).resolve()) if config_file else None  # continued from any folder
    params = load_space(space_file, overrides, config_file)
    base = config_module.load(config_file, overrides)
    saved = read_json(out_dir / TUNE)
    import yaml
    space = yaml.safe_load(Path(space_file).read_text())
    if saved is not None:
        if saved["space"] != space or saved["overrides"] != overrides or saved["config"] != config_file:
            raise RunDirectoryError(f"{out_dir} holds a search over another space or config; continue it with the "
                                    f"same --space, config and overrides, or choose another --out")
        if saved.get("folds") != folds:
            was = f"--folds {saved['folds']}" if saved.get("folds") else "no --folds"
            raise RunDirectoryError(f"{out_dir}'s search was started with {was}; continue it the same way, or choose "
                                    f"another --out")
        record = {**saved, "trials": trials}
        if storage and storage != saved["storage"]:
            raise RunDirectoryError(f"{out_dir}'s study is stored in {saved['storage']}; drop --storage to continue it")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        record = {"name": out_dir.resolve().name, "storage": storage_url(out_dir, storage, workers, say),
                  "config": config_file, "overrides": list(overrides), "space": space, "trials": trials,
                  "pruner": pruner, "seed": base.train.seed, "folds": folds}
    if workers > 1 and record["storage"].startswith("sqlite"):
        raise ConfigError(f"{out_dir}'s study is in SQLite, which locks up under {workers} writers; continue it with "
                          f"--workers 1, or start a new --out with --workers {workers} (a journal file)")
    write_json(out_dir / TUNE, record)
    study = load_study(record, sampler_seed=record["seed"])
    if not record["storage"].startswith(("postgresql", "mysql")):
        retry_stale(study, out_dir, say)
    done = finished(study)
    say(f"tune: {done} of {trials} trials finished; {len(params)} keys searched ({', '.join(p.key for p in params)})")
    if done < trials:
        if workers <= 1:
            work(record, str(out_dir), 0, None, say)
        else:
            threads = None if base.train.threads is not None else max(1, (os.cpu_count() or 1) // workers)
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                log = print_flush if worker_lines else say_nothing
                futures = [pool.submit(work, record, str(out_dir), index, threads, log) for index in range(workers)]
                for future in futures:
                    future.result()
    study = load_study(record)
    return summarize(study, record, out_dir)


def summarize(study, record: dict, out_dir: Path) -> dict:
    from optuna.trial import TrialState
    complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                      key=lambda t: -(t.value if t.value is not None else float("-inf")))
    rows = [{"number": t.number, "value": t.value, "params": t.params, "run_dir": t.user_attrs.get("run_dir"),
             "run_dirs": t.user_attrs.get("run_dirs", [t.user_attrs.get("run_dir")]),
             "test_acc": t.user_attrs.get("test_acc")} for t in complete]
    counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,)))
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
    result = {**record, "counts": counts, "best": rows[0] if rows else None, "ranking": rows}
    write_json(out_dir / TUNE, result)
    return result


def top_runs(study_dir: str | Path, k: int) -> list[Path]:
    """The run directories of the k best finished trials of the search in `study_dir` (of a
    cross-validated search, every fold run of each: k groups of k-fold members)."""
    study_dir = Path(study_dir)
    record = read_json(study_dir / TUNE)
    if record is None:
        raise RunDirectoryError(f"{study_dir} holds no search ({TUNE}); cnntricks tune --out DIR writes one")
    ranking = summarize(load_study(record), record, study_dir)["ranking"]
    if len(ranking) < k:
        raise ConfigError(f"--top {k}: the search in {study_dir} has {len(ranking)} finished trials; lower --top or "
                          f"continue the search (cnntricks tune ... --out {study_dir} --trials N)")
    return [Path(run) for row in ranking[:k] for run in row["run_dirs"]]
