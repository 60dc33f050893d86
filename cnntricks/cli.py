"""The `cnntricks` command line: train, evaluate, predict, config, experiment.

Exit codes (scripts may rely on them); every one but 1 comes with one line of message:
  0  success
  1  unexpected error (a bug: please report it with the traceback)
  2  bad usage or configuration (unknown key, bad value, missing config file)
  3  data problem (dataset missing, unreadable images, mismatched labels, a damaged file in the
     run directory such as a checkpoint that fails its checksum)
  4  training diverged (NaN or infinite loss) or the run directory cannot be used as asked
     (already holds a run, has none to resume, another process is writing it)
  5  cnntricks doctor --fail-on: a finding at that severity or worse
  6  the environment: disk full, permission denied, out of memory, a file system error
  130 interrupted by Ctrl-C (SIGINT), 143 stopped by SIGTERM; training writes a checkpoint first,
     and the run continues with cnntricks train --resume RUN_DIR
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
import warnings
from pathlib import Path

from cnntricks.cli_parser import build_parser, device_overrides
from cnntricks.text import percent as _percent
from cnntricks.text import table as _table

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DATA, EXIT_TRAINING, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_FINDINGS = 5  # cnntricks doctor --fail-on: a finding at that severity or worse
EXIT_ENVIRONMENT = 6  # disk full, permission denied, out of memory
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a program killed by it: the reader of stdout left (`| head`)


def _split_overrides(items: list[str]) -> tuple[str | None, list[str]]:
    """Positional words -> (config file or None, section.key=value overrides)."""
    from cnntricks.config import ConfigError
    config_file, overrides = None, []
    for item in items:
        if "=" in item:
            overrides.append(item)
        elif config_file is None and (item.endswith((".yaml", ".yml")) or Path(item).is_file()):
            config_file = item
        else:
            raise ConfigError(f"'{item}' is neither a config file (.yaml) nor an override "
                              f"section.key=value")
    return config_file, overrides


def _words_and_overrides(unknown: list[str]) -> tuple[list[str], list[str]]:
    """Split what argparse left: plain words, and `--section.key value` / `--section.key=value`."""
    from cnntricks.config import ConfigError
    words, overrides, i = [], [], 0
    while i < len(unknown):
        item = unknown[i]
        if not item.startswith("-"):
            words.append(item)
        elif item.startswith("--") and "." in item.split("=")[0]:
            key = item[2:]
            if "=" in key:
                overrides.append(key)
            elif i + 1 < len(unknown):
                overrides.append(f"{key}={unknown[i + 1]}")
                i += 1
            else:
                raise ConfigError(f"'{item}' needs a value, for example {item} VALUE")
        else:
            raise ConfigError(f"unrecognized option '{item}'; see --help")
        i += 1
    return words, overrides




def cmd_train(args, items: list[str], argv: list[str]) -> int:
    from contextlib import nullcontext

    from cnntricks import config
    from cnntricks.rundir import CONFIG, RunDirectoryError, hold_run_dir
    from cnntricks.train import distributed
    from cnntricks.train.loop import open_run_dir
    config_file, overrides = _split_overrides(items)
    recipe = None  # what train.time_budget chose, said once the run directory is known
    if args.resume:
        run_dir = Path(args.resume)
        if args.run_dir and Path(args.run_dir) != run_dir:
            raise config.ConfigError("give the run to continue once: --resume DIR (without --run-dir)")
        if config_file:
            raise config.ConfigError("--resume uses the run's own config.yaml; pass only "
                                     "section.key=value overrides (for example train.epochs=20)")
        if not distributed.launched():  # under torchrun rank 0 checks it, below
            open_run_dir(run_dir, resume=True)  # a RunDirectoryError when there is no run to continue
        cfg = config.load(run_dir / CONFIG, overrides)  # fit saves it once the checkpoint fits
    else:
        cfg = config.load(config_file, overrides)
        if config_file is None and cfg.train.time_budget is not None:  # the recipe measured best for the budget
            from cnntricks.train.budget import recipe_for
            name, keys = recipe_for(cfg.train.time_budget)
            cfg = config.load(None, [*keys, f"train.name={name}", *overrides])  # what the command line says wins
            recipe = (f"train.time_budget={cfg.train.time_budget:g} s: the {name} recipe"
                      f" ({', '.join(keys) if keys else 'the default recipe'}; configs/{name}.yaml), measured best "
                      f"for this budget; keys given here override it, a config file trains its own recipe")
        run_dir = Path(args.run_dir or Path("runs") / f"{time.strftime('%Y-%m-%d_%H%M%S')}-{cfg.train.name}")
    if cfg.train.processes > 1 and not distributed.launched():  # train.processes=N: the same command N times
        return _launch(argv + ([] if args.resume or args.run_dir else ["--run-dir", str(run_dir)]), cfg, run_dir)
    world = distributed.setup(cfg.train.device)  # one process, or this one's place among torchrun's
    refusal = None
    if world.main:
        try:
            open_run_dir(run_dir, resume=bool(args.resume))  # a run already there: refused before anything is touched
        except RunDirectoryError as err:
            refusal = str(err)
    run_dir, refusal = world.broadcast((run_dir, refusal))  # rank 0's folder (its clock named it) and verdict
    if refusal is not None:
        raise RunDirectoryError(refusal)
    if world.main:
        if recipe:
            print(recipe, file=sys.stderr)
        print(f"run directory: {run_dir}" + (f" ({world.size} processes)" if world.distributed else ""),
              file=sys.stderr)
    try:
        with hold_run_dir(run_dir) if world.main else nullcontext():  # one process at a time per run, to the report
            return _train_and_report(cfg, run_dir, args, world.main)
    finally:
        distributed.teardown()


def _launch(argv: list[str], cfg, run_dir: Path) -> int:
    """train.processes=N: this command in N processes under torch.distributed.run (the folder named here, so
    every rank writes the same one); their exit status, or 128 + the signal that stopped them."""
    from cnntricks.train import distributed
    code, stopped = distributed.launch(argv, cfg.train.processes)
    return 128 + stopped if stopped is not None and code != 0 else code  # rank 0 said where the run stands


def _train_and_report(cfg, run_dir: Path, args, main: bool = True) -> int:
    from cnntricks.session import train
    train(cfg, run_dir, resume=bool(args.resume), progress=not args.quiet and main, show=main, report=main)
    return EXIT_OK


def _draw_report(run_dir: Path, findings: list | None = None) -> bool:
    from cnntricks.session import draw_report
    return draw_report(run_dir, findings)


def cmd_doctor(args) -> int:
    import json

    from cnntricks.config import ConfigError
    from cnntricks.doctor import SEVERITIES, diagnose, format_findings, worst
    from cnntricks.rundir import HISTORY, RunDirectoryError
    run_dir = Path(args.run_dir)
    from cnntricks.ensemble import is_ensemble
    if is_ensemble(run_dir):
        return _doctor_ensemble(args, run_dir)
    foreign = not (run_dir / HISTORY).is_file()
    if foreign and not (run_dir.is_file() or (run_dir / "metrics.csv").is_file()
                        or (run_dir.is_dir() and next(run_dir.rglob("events.out.tfevents.*"), None) is not None)):
        raise RunDirectoryError(f"{run_dir} holds no history.jsonl, so there is no run to diagnose; runs are "
                                "written by cnntricks train (or any loop that writes the README's format); "
                                "the doctor also reads a Lightning version folder (metrics.csv), a Keras "
                                "CSVLogger file or a TensorBoard log directory")
    if args.map and not foreign:
        raise ConfigError("--map names another tool's columns; a cnntricks run needs none")
    if foreign and args.report:
        raise ConfigError("--report draws a cnntricks run's figures; another tool's log gets the findings only")
    from cnntricks.doctor.foreign import ForeignLogError, parse_map
    try:
        findings = diagnose(run_dir, parse_map(args.map))
    except ForeignLogError as err:
        raise ConfigError(str(err)) from None
    if args.json:
        print(json.dumps([f.to_dict() for f in findings], indent=2))
    else:
        print(format_findings(findings, "info" if args.all else "warning"))
    if args.report and _draw_report(run_dir, findings):
        print(f"report: {run_dir / 'report' / 'index.html'}", file=sys.stderr)
    failing = args.fail_on and worst(findings) is not None and \
        SEVERITIES.index(worst(findings)) >= SEVERITIES.index(args.fail_on)
    return EXIT_FINDINGS if failing else EXIT_OK


def _doctor_ensemble(args, path: Path) -> int:
    """The ensemble's own findings, then each member's, as `cnntricks doctor` prints a run's."""
    from cnntricks.doctor import SEVERITIES, format_findings, worst
    from cnntricks.doctor.ensemble_checks import diagnose_ensemble
    scopes = diagnose_ensemble(path)
    if args.json:
        print(json.dumps({scope: [f.to_dict() for f in found] for scope, found in scopes}, indent=2))
    else:
        minimum = "info" if args.all else "warning"
        for scope, found in scopes:
            title = "the ensemble" if scope == "ensemble" else f"member {scope}"
            command = "cnntricks ensemble" if scope == "ensemble" else "cnntricks train"
            print(f"== {title}\n{format_findings(found, minimum, command)}\n")
    if args.report and _draw_report(path):
        print(f"report: {path / 'report' / 'index.html'}", file=sys.stderr)
    every = [f for _, found in scopes for f in found]
    failing = args.fail_on and worst(every) is not None and \
        SEVERITIES.index(worst(every)) >= SEVERITIES.index(args.fail_on)
    return EXIT_FINDINGS if failing else EXIT_OK


def cmd_evaluate(args, run_dir: str, items: list[str]) -> int:
    if any("=" not in item for item in items):
        from cnntricks.config import ConfigError
        raise ConfigError(f"evaluate takes one run directory and section.key=value overrides, "
                          f"not {[i for i in items if '=' not in i]}")
    from cnntricks.ensemble import is_ensemble
    if is_ensemble(run_dir):
        return _evaluate_ensemble(args, Path(run_dir), items)
    from cnntricks.data import DataError, load_splits
    from cnntricks.train.inference import load_predictor
    loaded = load_predictor(Path(run_dir), items, checkpoint=args.checkpoint)
    cfg, data = loaded.cfg, loaded.data
    splits = load_splits(cfg.data, cfg.train.seed)
    shape = list(splits.train.images.shape[1:])
    if splits.train.classes != data["classes"] or shape[0] != data["channels"]:
        raise DataError(f"{cfg.data.source} data ({len(splits.train.classes)} classes {splits.train.classes}, "
                        f"{shape[0]} channels) is not what {run_dir} was trained on ({data['classes']}, "
                        f"{data['channels']} channels); its labels would be misread")
    if shape[1:] != [data["height"], data["width"]]:
        warnings.warn(f"images are {shape[1]}x{shape[2]}, the run trained on {data['height']}x{data['width']}; "
                      f"set data.image_size to match for a fair evaluation")
    store = {"test": splits.test, "val": splits.val, "train": splits.train}[args.split]
    if store is None or len(store) == 0:
        from cnntricks.config import ConfigError
        raise ConfigError(f"the {args.split} split of {run_dir} is empty"
                          f"{' (data.val_fraction is 0)' if args.split == 'val' else ''}; choose another --split")
    result = loaded.predictor.evaluate(store)
    return _print_evaluation(args, result, len(store), data.get("train_counts"))


def _evaluate_ensemble(args, path: Path, items: list[str]) -> int:
    from cnntricks.config import ConfigError
    from cnntricks.ensemble import load_ensemble
    items = [i for i in items if not i.startswith(("train.device=", "train.precision="))]  # members keep theirs
    if items:
        raise ConfigError(f"an ensemble is evaluated on its members' own data; overrides {items} are for runs")
    if args.checkpoint:
        raise ConfigError("--checkpoint names a run's weights; an ensemble's members are fixed when it is built")
    ensemble = load_ensemble(path)
    result = ensemble.evaluate(args.split)
    images = len(result["confusion"]) and sum(map(sum, result["confusion"]))
    counts = ensemble.members[0].loaded.data.get("train_counts")
    if not args.json:
        rows = [[m["name"], _percent(m["acc"]), f"{m['loss']:.4f}", _percent(m["ece"])] for m in result["members"]]
        rows.append([f"ensemble ({ensemble.fusion.name})", _percent(result["acc"]), f"{result['loss']:.4f}",
                     _percent(result["ece"])])
        print(_table(rows, ["member", "accuracy", "NLL", "calibration error"]))
        print(f"mean pairwise disagreement {_percent(result['mean_disagreement'])}\n")
    return _print_evaluation(args, result, images, counts)


def _print_evaluation(args, result: dict, images: int, counts: list[int] | None) -> int:
    """evaluate's table (or JSON) of a run's or an ensemble's result on args.split."""
    if counts:  # runs before data.json had them: no training counts, no shot groups
        from cnntricks.train.inference import shot_accuracy
        result["shot_acc"] = shot_accuracy(result["per_class"], counts)
    if args.json:
        print(json.dumps({"split": args.split, "images": images, **result}, indent=2))
        return EXIT_OK
    rows = [[r["class"], r["name"], *([counts[r["class"]]] if counts else []), r["count"], _percent(r["acc"]),
             _percent(r["precision"]), _percent(r["f1"])] for r in result["per_class"]]
    print(_table(rows, ["label", "class", *(["trained on"] if counts else []), "images", "recall", "precision", "F1"]))
    print(f"\n{args.split} accuracy {_percent(result['acc'])} on {images} images "
          f"(loss {result['loss']:.4f}); balanced accuracy {_percent(result['balanced_acc'])}, "
          f"macro F1 {_percent(result['macro_f1'])}")
    if counts:
        shots = result["shot_acc"]
        print("recall by training images per class: " + ", ".join(
            f"{name}-shot {_percent(value)}" for name, value in shots.items() if value is not None)
              + " (many: over 100, few: under 20)")
    return EXIT_OK


PREDICT_CHUNK = 512  # image files decoded and predicted at a time: memory stays bounded on big folders


def cmd_predict(args) -> int:
    import warnings as warnings_module
    import torch
    from cnntricks.data import DataError, DataWarning
    from cnntricks.data.decode import far_from_training
    from cnntricks.data.load import image_files, read_images
    from cnntricks.ensemble import is_ensemble, load_ensemble
    paths = image_files(args.images)
    if is_ensemble(args.run_dir):
        ensemble = load_ensemble(args.run_dir)
        classes, first = ensemble.classes, ensemble.members[0].loaded.data

        def predict(chunk):
            _, kept, problems = read_images(chunk, first["channels"], (first["height"], first["width"]))
            readable = [chunk[i] for i in kept]
            return (ensemble.predict_files(readable) if readable else None), kept, problems
    else:
        from cnntricks.train.inference import load_predictor
        loaded = load_predictor(Path(args.run_dir), device_overrides(args), checkpoint=args.checkpoint)
        first, predictor = loaded.data, loaded.predictor
        classes = first["classes"]

        def predict(chunk):
            images, kept, problems = read_images(chunk, first["channels"], (first["height"], first["width"]))
            return (torch.softmax(predictor.logits(images), dim=1) if kept else None), kept, problems
    for line in far_from_training(paths, first["channels"], (first["height"], first["width"])):
        warnings_module.warn(DataWarning(line), stacklevel=1)
    predicted, probabilities, problems = [], [], []
    bar = _progress(len(paths), "images") if len(paths) > PREDICT_CHUNK and not args.json else None
    for start in range(0, len(paths), PREDICT_CHUNK):
        chunk = paths[start:start + PREDICT_CHUNK]
        chunk_probabilities, kept, chunk_problems = predict(chunk)
        problems += chunk_problems
        if chunk_probabilities is not None:
            predicted += [chunk[i] for i in kept]
            probabilities.append(chunk_probabilities)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    if not predicted:
        from cnntricks.data.errors import list_items
        raise DataError(f"none of the {len(paths)} image files could be read:\n{list_items(problems)}")
    if problems:
        from cnntricks.data.errors import list_items
        warnings_module.warn(DataWarning(f"{len(problems)} of {len(paths)} image files could not be read and are "
                                         f"left out:\n{list_items(problems)}"), stacklevel=1)
    probabilities = torch.cat(probabilities)
    top = probabilities.topk(min(args.top, probabilities.shape[1]), dim=1)
    results = [{"image": str(path),
                "predictions": [{"label": classes[i], "probability": float(p)}
                                for p, i in zip(top.values[n], top.indices[n])]}
               for n, path in enumerate(predicted)]
    if args.csv:
        _write_predictions_csv(Path(args.csv), predicted, probabilities, classes)
    if args.json:
        print(json.dumps(results, indent=2))
        return EXIT_OK
    if args.csv and len(results) > 20:
        print(f"{len(results)} images predicted: {args.csv}")
        return EXIT_OK
    rows = [[r["image"], r["predictions"][0]["label"], f"{r['predictions'][0]['probability']:.3f}",
             ", ".join(f"{q['label']} {q['probability']:.3f}" for q in r["predictions"][1:])]
            for r in results]
    print(_table(rows, ["image", "label", "probability", "next"]))
    if args.csv:
        print(f"\nwritten to {args.csv}")
    return EXIT_OK


def _write_predictions_csv(path: Path, images: list, probabilities, classes: list[str]) -> None:
    """image, label, probability, then one probability column per class; written atomically."""
    import csv
    import io
    from cnntricks.rundir import write_atomic
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["image", "label", "probability", *classes])
    best = probabilities.argmax(1)
    for image, row, label in zip(images, probabilities.tolist(), best.tolist()):
        writer.writerow([str(image), classes[label], f"{row[label]:.6f}", *(f"{p:.6f}" for p in row)])
    write_atomic(path, out.getvalue())


def _progress(total: int, unit: str):
    from tqdm import tqdm
    return tqdm(total=total, unit=unit, leave=False, dynamic_ncols=True, file=sys.stderr)


def _average_weights(args, sources, say) -> int:
    from cnntricks.config import ConfigError
    from cnntricks.ensemble.swa import average_weights
    if args.train is not None or args.copy or args.fusion != "mean":
        raise ConfigError("--swa averages checkpoints into one run: it takes no --train, --copy or --fusion")
    record = average_weights(sources, args.out, say=say)
    _draw_report(Path(args.out))
    if args.json:
        print(json.dumps(record, indent=2))
        return EXIT_OK
    if "test_after" in record:
        before, after = record["test_before"], record["test_after"]
        print(_table([[f"last checkpoint ({before['member']})", _percent(before["acc"]), f"{before['loss']:.4f}"],
                      [f"weight average of {len(record['members'])}", _percent(after["acc"]), f"{after['loss']:.4f}"]],
                     ["model", "test accuracy", "NLL"]))
    print(f"run: {args.out}  (cnntricks evaluate {args.out} ; cnntricks predict {args.out} IMAGE ...)")
    return EXIT_OK


def cmd_export(args) -> int:
    from cnntricks.export import export_run
    record = export_run(args.run_dir, args.format, args.out, args.input, args.checkpoint)
    if args.json:
        print(json.dumps(record, indent=2))
        return EXIT_OK
    shape = "x".join(map(str, record["input"]["shape"]))
    print(f"{record['format']}: {record['file']} (from {record['checkpoint']}; input images {shape} "
          f"{record['input'].get('dtype', '')}, output logits over {len(record['classes'])} classes)")
    check = record.get("check")
    if check and "skipped" in check:
        print(f"not checked: {check['skipped']}")
    elif check:
        print(f"checked against PyTorch: largest logit difference {check['batch_1']:.2e} at batch 1, "
              f"{check['batch_8']:.2e} at batch 8 ({'within' if check['ok'] else 'NOT within'} {check['within']:g})")
    return EXIT_OK if not check or check.get("ok", True) else EXIT_ERROR


def cmd_cache(args, items: list[str]) -> int:
    from cnntricks import config
    from cnntricks.data.image_folder import build_disk_store
    from cnntricks.data.mapped import IMAGES
    from cnntricks.data.memory import gigabytes
    config_file, overrides = _split_overrides(items)
    cfg = config.load(config_file, overrides)
    if cfg.data.source != "image-folder":
        raise config.ConfigError(f"cnntricks cache builds an image folder's disk store; data.source is "
                                 f"{cfg.data.source} (its images are small enough to stay in memory)")
    if args.workers < 0:
        raise config.ConfigError(f"--workers must be 0 (one per core) or more, got {args.workers}")
    folder, state = build_disk_store(cfg.data, args.workers, progress=True)
    count, channels, height, width = state["shape"]
    skipped = f"; {len(state['unreadable'])} unreadable file(s) left out" if state["unreadable"] else ""
    print(f"{count:,} images at {channels}x{height}x{width} in {folder / IMAGES} "
          f"({gigabytes((folder / IMAGES).stat().st_size)}){skipped}; train from it with data.storage=disk")
    return EXIT_OK


def cmd_tune(args, items: list[str]) -> int:
    from cnntricks.tune import tune
    config_file, overrides = _split_overrides(items)
    say = (lambda message: None) if args.json else (lambda message: print(message, file=sys.stderr, flush=True))
    result = tune(config_file, overrides, args.space, args.out, args.trials, args.storage, args.workers, args.pruner,
                  say=say, folds=args.folds)
    if args.json:
        print(json.dumps(result, indent=2))
        return EXIT_OK
    rows = [[row["number"], _percent(row["value"]), " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                           for k, v in row["params"].items()), row["run_dir"]]
            for row in result["ranking"][:10]]
    print(_table(rows, ["trial", "validation accuracy", "parameters", "run"]))
    counts = result["counts"]
    print(f"\n{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed; storage "
          f"{result['storage']}\nbest runs as an ensemble: cnntricks ensemble --study {args.out} --top 5 --out ens/top5")
    return EXIT_OK


def _checkpoint_members(args, items: list[str]) -> list[tuple[str, str]]:
    """--snapshots RUN (snapshots/cycle-NN) or --checkpoints RUN (checkpoints/epoch-NNNN), the newest --last K."""
    from cnntricks.config import ConfigError
    from cnntricks.rundir import CHECKPOINTS, SNAPSHOTS
    if args.snapshots and args.checkpoints:
        raise ConfigError("give --snapshots RUN or --checkpoints RUN, not both")
    run, folder = (args.snapshots, SNAPSHOTS) if args.snapshots else (args.checkpoints, CHECKPOINTS)
    if args.runs or items:
        raise ConfigError(f"--{folder} takes the members from one run; drop {args.runs + items}")
    pattern = re.compile(r"cycle-\d+" if args.snapshots else r"epoch-\d{4,}")  # complete epochs, not mid-epoch
    kept = sorted(p.name for p in (Path(run) / folder).glob("*") if p.is_dir() and pattern.fullmatch(p.name))
    if args.last is not None:
        if args.last < 2:
            raise ConfigError(f"--last must be 2 or more, got {args.last}")
        kept = kept[-args.last:]
    if len(kept) < 2:
        how = ("train a run with schedule.name=snapshot schedule.cycles=5 to keep one per cycle" if args.snapshots
               else "train a run with train.keep_checkpoints=0 to keep one per epoch")
        raise ConfigError(f"{run} has {len(kept)} {'snapshot' if args.snapshots else 'checkpoint'}"
                          f"{'s' if len(kept) != 1 else ''} ({Path(run) / folder}); {how}")
    return [(run, f"{folder}/{name}") for name in kept]


def cmd_ensemble(args, items: list[str]) -> int:
    from cnntricks.config import ConfigError
    from cnntricks.ensemble import build_ensemble
    words = [*args.runs, *items, *([args.train] if args.train else [])]  # argparse may put a run or override anywhere
    args.runs = [w for w in words if "=" not in w and w != args.train]
    items = [w for w in words if "=" in w]
    if args.train and "=" in args.train:
        args.train = ""
    say = (lambda message: None) if args.json else (lambda message: print(message, file=sys.stderr))
    members_inside = args.train is not None
    if members_inside:
        from cnntricks.ensemble.directory import check_out_dir
        from cnntricks.ensemble.train import member_configs, train_members
        if args.runs and not args.runs[0].endswith((".yaml", ".yml")):
            raise ConfigError(f"give the members as runs or as --train CONFIG --seeds K, not both ({args.runs})")
        config_file = args.train or (args.runs[0] if args.runs else None)
        from cnntricks.ensemble.fusion import create_fusion
        if args.folds and create_fusion(args.fusion).fits_on == "training":
            raise ConfigError(f"--folds members train on different images, so the {args.fusion} fusion (fitted on the "
                              f"training split) has nothing common to fit on; use --fusion stack or weighted "
                              f"(fitted out of fold), or mean or vote")
        check_out_dir(Path(args.out), members_inside=True)
        configs = member_configs(config_file, items, args.seeds, args.workers, folds=args.folds)
        sources = [(run, None) for run in train_members(configs, args.out, args.workers, say)]
    elif args.study:
        from cnntricks.tune import top_runs
        if args.runs or items:
            raise ConfigError(f"--study takes the members from a search; drop {args.runs + items}")
        sources = [(run, None) for run in top_runs(args.study, args.top)]
    elif args.snapshots or args.checkpoints:
        sources = _checkpoint_members(args, items)
    else:
        if items:
            raise ConfigError(f"section.key=value overrides {items} are for --train")
        sources = [(run.rsplit("@", 1)[0], run.rsplit("@", 1)[1]) if "@" in Path(run).name else (run, None)
                   for run in args.runs]
    if args.swa:
        return _average_weights(args, sources, say)
    summary = build_ensemble(sources, args.out, args.fusion, copy=args.copy, say=say, members_inside=members_inside)
    _draw_report(Path(args.out))
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    info = summary["ensemble"]
    rows = [[m["name"], _percent(m["acc"]), f"{m['loss']:.4f}", _percent(m["ece"])] for m in info["members"]]
    rows.append([f"ensemble ({args.fusion})", _percent(summary["test_acc"]), f"{summary['test_loss']:.4f}",
                 _percent(summary["test_ece"])])
    print(_table(rows, ["member", "test accuracy", "NLL", "calibration error"]))
    print(f"\ngain over the best member ({info['best_member']}): {100 * info['gain']:+.2f} points; "
          f"mean pairwise disagreement {_percent(info['mean_disagreement'])}")
    print(f"ensemble: {args.out}  (cnntricks evaluate {args.out} ; cnntricks predict {args.out} IMAGE ...)")
    return EXIT_OK


def _preview_images(items: list[str], count: int):
    """(config, uint8 training images) for the preview commands: the data keys may be overridden."""
    from cnntricks import config
    from cnntricks.data import load_splits
    config_file, overrides = _split_overrides(items)
    cfg = config.load(config_file, overrides)
    splits = load_splits(cfg.data, cfg.train.seed)
    return cfg, splits.train.images[:count]


def cmd_augment(args, items: list[str]) -> int:
    import torch
    from cnntricks.augment import FancyPCA
    from cnntricks.augment.policy import create_policy, resolve
    from cnntricks.report.augment_preview import default_operations, draw_augment_preview
    if not args.preview:
        raise_usage("augment needs --preview (the only action so far)")
    cfg, images = _preview_images(items + [f"augment.policy={args.policy}"] if args.policy else items, 2000)
    channels = images.shape[1]
    try:
        values, notice = resolve(cfg.augment, channels)
    except ValueError as err:  # colour asked of gray images
        raise_usage(str(err))
    if notice:
        warnings.warn(notice)
    fancy = FancyPCA.fit(images) if values["fancy_pca"] else None
    operations = default_operations(channels, images)
    operations[f"policy: {cfg.augment.policy}"] = create_policy(cfg.augment, channels, fancy, values=values)
    path = draw_augment_preview(images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))],
                                operations, Path(args.out), examples=args.examples,
                                title=f"{cfg.data.source}: augmentation by operation and policy '{cfg.augment.policy}'")
    print(path)
    return EXIT_OK


def cmd_preprocess(args, items: list[str]) -> int:
    from cnntricks.report.whitening_demo import draw_whitening_demo
    if not args.demo:
        raise_usage("preprocess needs --demo (the only action so far)")
    cfg, images = _preview_images(items, args.images)
    print(draw_whitening_demo(images, Path(args.out), components=args.components))
    return EXIT_OK


def cmd_probe(args, items: list[str]) -> int:
    from cnntricks import config
    from cnntricks.data import load_splits
    from cnntricks.report.probe_figure import draw_probe
    from cnntricks.train.inference import device_and_precision
    from cnntricks.transfer import pretrained_model, probe
    config_file, overrides = _split_overrides(items)
    cfg = config.load(config_file, overrides)
    splits = load_splits(cfg.data, cfg.train.seed)
    test = splits.test if splits.test is not None and len(splits.test) else splits.val
    if test is None or not len(test):
        raise config.ConfigError("probe needs a test or validation split to score on; lower data.test_fraction's "
                                 "rounding by adding images, or set data.val_fraction")
    device, _ = device_and_precision(cfg)
    model, preprocess, loaded = pretrained_model(cfg, splits, device)
    print(f"{cfg.model.pretrained}: {loaded}", file=sys.stderr)
    rows = probe(model, preprocess, splits.train, test, device, seed=cfg.train.seed)
    path = draw_probe(rows, args.out, f"linear probes: {Path(cfg.model.pretrained).name} on {cfg.data.source}")
    if args.json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
    else:
        print(_table([[row.stage, row.features, _percent(row.train_acc), _percent(row.test_acc)] for row in rows],
                     ["stage", "features", "train accuracy", "test accuracy"]))
        print(f"\nfigure: {path}")
    return EXIT_OK


def raise_usage(message: str):
    from cnntricks.config import ConfigError
    raise ConfigError(message)


def cmd_rebalance(args) -> int:
    from cnntricks.train.rebalance import rebalance
    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir.with_name(f"{run_dir.name}-{args.method}")
    record = rebalance(run_dir, out, args.method, args.tau, say=(lambda m: None) if args.json else print)
    if args.json:
        print(json.dumps(record, indent=2))
        return EXIT_OK
    rows = [[split, _percent(record[f"{split}_{when}"]["acc"]), _percent(record[f"{split}_{when}"]["balanced_acc"]),
             _percent(record[f"{split}_{when}"]["macro_f1"]), when]
            for split in ("val", "test") for when in ("before", "after") if f"{split}_{when}" in record]
    print(_table(rows, ["split", "accuracy", "balanced", "macro F1", ""]))
    tau = "" if record["tau"] is None else f" (tau {record['tau']:g}, chosen on the {record['searched_on']} split)" \
        if len(record["searched"]) > 1 else f" (tau {record['tau']:g})"
    print(f"\n{args.method}{tau}: the rebalanced run is {out}; cnntricks evaluate {out}")
    return EXIT_OK


def cmd_config(args) -> int:
    from cnntricks import config
    from cnntricks.registry import closest
    if args.section and args.section not in config.SECTIONS:
        raise config.ConfigError(f"unknown section '{args.section}'{closest(args.section, config.SECTIONS)}; "
                                 f"sections: {', '.join(config.SECTIONS)}")
    if args.yaml:
        defaults = config.Config().to_dict()
        import yaml
        print(yaml.safe_dump({args.section: defaults[args.section]} if args.section else defaults, sort_keys=False),
              end="")
        return EXIT_OK
    rows = [list(r) for r in config.describe() if not args.section or r[0].startswith(args.section + ".")]
    import shutil
    print(_wrapped_table(rows, ["key", "default", "values", "meaning"], shutil.get_terminal_size((100, 24)).columns))
    return EXIT_OK


def _wrap_choices(text: str, width: int) -> list[str]:
    """Lines of at most `width` (unless one piece is longer), broken after a '|' or at a space."""
    import re
    lines = [""]
    for piece in re.split(r"(?<=\|)| ", text):
        if not piece:
            continue
        joiner = "" if not lines[-1] or lines[-1].endswith("|") else " "
        if lines[-1] and len(lines[-1]) + len(joiner) + len(piece) > width:
            lines.append(piece)
        else:
            lines[-1] += joiner + piece
    return lines


def _wrapped_table(rows: list[list[str]], header: list[str], width: int) -> str:
    """`_table` fitted to `width` columns: the last two columns wrapped (each at least 24 wide)."""
    import textwrap
    fixed = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 2)]
    room = max(48, width - sum(fixed) - 2 * (len(header) - 1) - 1)
    values = min(max(len(str(r[-2])) for r in [header, *rows]), max(24, room // 3))
    widths = [*fixed, values, max(24, room - values)]
    lines = [header, ["-" * w for w in widths]]
    for row in rows:
        wrapped = [_wrap_choices(str(row[-2]), widths[-2]),
                   textwrap.wrap(str(row[-1]), widths[-1], break_on_hyphens=False, break_long_words=False) or [""]]
        for index in range(max(map(len, wrapped))):
            first = [str(c) for c in row[:-2]] if index == 0 else [""] * len(fixed)
            lines.append([*first, *(part[index] if index < len(part) else "" for part in wrapped)])
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def cmd_experiment(args) -> int:
    from cnntricks.config import ConfigError
    from cnntricks.experiments import EXPERIMENTS
    try:
        run = EXPERIMENTS.get(args.name)
    except ValueError as err:  # unknown name: the registry's message lists the known ones
        raise ConfigError(f"{err}; see cnntricks experiment --help") from None
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: give at least 1 seed")
    out_dir = Path(args.out or Path("results") / args.name)
    print(f"{args.name}: budget {args.budget}, seeds {args.seed}..{args.seed + args.seeds - 1}, "
          f"writing to {out_dir}", file=sys.stderr)
    result = run(out_dir, seed=args.seed, seeds=args.seeds, budget=args.budget, data=args.data)
    for what, path in result["files"].items():
        print(f"{what}: {path}")
    print()
    print(_table(result["summary"]["rows"], result["summary"]["header"]))
    return EXIT_OK


def _describe_os_error(err: OSError) -> str:
    import errno
    where = f" ({err.filename})" if err.filename else ""
    advice = {errno.ENOSPC: "the disk is full: free some space, then continue with --resume (the last "
                            "checkpoint is intact)",
              errno.EDQUOT: "the disk quota is exceeded: free some space, then continue with --resume",
              errno.EACCES: "permission denied: choose a folder you may write (--run-dir), or fix the permissions",
              errno.EPERM: "operation not permitted: choose another folder, or fix the permissions",
              errno.EROFS: "the file system is read-only: choose another --run-dir"}.get(err.errno)
    if advice is None and "CUDA out of memory" in str(err):
        advice = "the GPU is out of memory: lower optim.batch_size"
    return f"{advice or (err.strerror or str(err))}{where}"


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"cnntricks: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _format_warning  # one readable line, not a source location
    from cnntricks.train.interrupt import Interrupted, raise_on_sigterm
    try:
        raise_on_sigterm()  # a scheduler's stop gets a message and exit 143, not a silent death
        return _dispatch(argv)
    except Interrupted as stop:
        saved = f"checkpoint {stop.checkpoint} written; " if stop.checkpoint else ""
        if os.environ.get("RANK", "0") == "0":  # under torchrun rank 0 speaks for every process
            print(f"\ncnntricks: stopped by {stop.name}; {saved}{_continue_with(stop)}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt as stop:
        print(f"\ncnntricks: interrupted; {_continue_with(stop)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `cnntricks config | head`: the reader left; nothing to say to it
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush would fail again
        return EXIT_BROKEN_PIPE


def _continue_with(stop: KeyboardInterrupt) -> str:
    """How the interrupted run continues: its directory when training had begun (fit sets run_dir)."""
    run_dir = getattr(stop, "run_dir", None)
    if run_dir is None:
        return "a training run continues with cnntricks train --resume RUN_DIR"
    return f"the run continues with cnntricks train --resume {run_dir}"


def _dispatch(argv: list[str] | None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command not in ("train", "evaluate", "augment", "preprocess", "probe", "ensemble", "tune",
                                        "cache"):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    from cnntricks.config import ConfigError
    from cnntricks.data import DataError
    from cnntricks.rundir import DamagedFileError, RunDirectoryError
    from cnntricks.train.loop import TrainingDiverged
    try:
        if args.command in ("train", "evaluate", "augment", "preprocess", "probe"):
            words, overrides = _words_and_overrides(unknown)
            if args.command == "probe":
                return cmd_probe(args, words + overrides)
            if args.command == "augment":
                return cmd_augment(args, words + overrides)
            if args.command == "preprocess":
                return cmd_preprocess(args, words + overrides)
            if args.command == "train":
                return cmd_train(args, words + overrides + device_overrides(args),
                                 list(sys.argv[1:] if argv is None else argv))
            if len(words) < 1:
                raise ConfigError("evaluate needs a run directory: cnntricks evaluate RUN_DIR")
            return cmd_evaluate(args, words[0], words[1:] + overrides + device_overrides(args))
        if args.command == "predict":
            return cmd_predict(args)
        if args.command == "tune":
            words, overrides = _words_and_overrides(unknown)
            return cmd_tune(args, words + overrides)
        if args.command == "cache":
            words, overrides = _words_and_overrides(unknown)
            return cmd_cache(args, words + overrides)
        if args.command == "ensemble":
            words, overrides = _words_and_overrides(unknown)
            return cmd_ensemble(args, words + overrides)
        if args.command == "experiment":
            return cmd_experiment(args)
        if args.command == "doctor":
            return cmd_doctor(args)
        if args.command == "rebalance":
            return cmd_rebalance(args)
        if args.command == "export":
            return cmd_export(args)
        return cmd_config(args)
    except (DataError, DamagedFileError) as err:
        print(f"cnntricks: data error: {err}", file=sys.stderr)
        return EXIT_DATA
    except ConfigError as err:
        print(f"cnntricks: configuration error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (TrainingDiverged, RunDirectoryError) as err:
        print(f"cnntricks: {err}", file=sys.stderr)
        return EXIT_TRAINING
    except MemoryError:
        print("cnntricks: environment error: out of memory; lower optim.batch_size or data.image_size, "
              "or use data.subset", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except RuntimeError as err:
        if "out of memory" not in str(err) and "not enough memory" not in str(err):
            raise  # a bug: exit 1 with the traceback
        print(f"cnntricks: environment error: out of memory ({str(err).splitlines()[0][:120]}); lower "
              f"optim.batch_size or data.image_size, or use data.subset", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except BrokenPipeError:  # the reader of stdout left (`| head`): main ends quietly
        raise
    except OSError as err:  # disk full, permission denied, a vanished file system
        print(f"cnntricks: environment error: {_describe_os_error(err)}", file=sys.stderr)
        return EXIT_ENVIRONMENT


if __name__ == "__main__":
    sys.exit(main())
