"""The `cnntricks` argument parser: one small function per command (the commands run in cli.py)."""
from __future__ import annotations

import argparse


def _experiment_list() -> str:
    from cnntricks.experiments import EXPERIMENTS, describe
    width = max(map(len, EXPERIMENTS.names())) + 2
    return "experiments:\n" + "\n".join(f"  {name:<{width}}{describe(name)}" for name in EXPERIMENTS.names())


def add_train(sub) -> None:
    train = sub.add_parser("train", usage="cnntricks train [CONFIG.yaml] [section.key=value ...] "
                           "[--run-dir DIR] [--resume RUN_DIR] [--quiet]", help="train a model (default: the fast recipe on Fashion-MNIST)",
                           description="Train a classifier. Give an optional YAML config and any "
                                       "section.key=value overrides (see `cnntricks config`).",
                           epilog="examples:\n  cnntricks train\n  cnntricks train configs/seed.yaml "
                                  "optim.lr=0.05 train.epochs=20 --run-dir runs/lr05\n"
                                  "  cnntricks train --resume runs/lr05",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--run-dir", help="where to write the run (default runs/<timestamp>-<train.name>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or finished run from its newest checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    add_device_flags(train)


def add_checkpoint_flag(parser) -> None:
    parser.add_argument("--checkpoint", metavar="NAME",
                        help="which weights: best (train.keep=best|both), last, epoch-NNNN, snapshots/cycle-NN "
                             "(default: the run's own model, best with train.keep=best, else the newest checkpoint)")


def add_device_flags(parser) -> None:
    """--device and --precision: the shortcuts for train.device= and train.precision=."""
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="train.device (default auto: CUDA when present)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"],
                        help="train.precision (default auto: bf16 where the hardware has it, else fp32)")


def device_overrides(args) -> list[str]:
    """The overrides --device and --precision stand for."""
    return [f"train.{key}={value}" for key in ("device", "precision") if (value := getattr(args, key, None))]


def add_evaluate(sub) -> None:
    evaluate = sub.add_parser("evaluate", usage="cnntricks evaluate RUN_DIR [section.key=value ...] "
                              "[--data.root DIR ...] [--split {test,val,train}] [--json]", help="accuracy and a per-class table for a trained run or ensemble",
                              description="Evaluate a run's newest checkpoint. Data keys can be "
                                          "changed, e.g. --data.root other/ or data.root=other/. An ensemble "
                                          "directory (cnntricks ensemble) is evaluated on its members' data, "
                                          "with each member's figures beside the ensemble's.")
    evaluate.add_argument("--split", choices=["test", "val", "train"], default="test")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_checkpoint_flag(evaluate)
    add_device_flags(evaluate)


def add_predict(sub) -> None:
    predict = sub.add_parser("predict", help="label and probability for image files",
                             description="Predict image files with a run's newest checkpoint, or with an ensemble "
                                         "directory (each member reads the files at its own input size).")
    predict.add_argument("run_dir", metavar="RUN_OR_ENSEMBLE_DIR")
    predict.add_argument("images", nargs="+", help="image files (JPEG, PNG, BMP, ...), folders (every image under "
                                                   "them) or patterns ('photos/*.jpg', quoted)")
    predict.add_argument("--top", type=int, default=3, help="how many labels to list per image")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    predict.add_argument("--csv", metavar="FILE", help="also write image, label, probability and every class's "
                                                       "probability to FILE (one row per image)")
    add_checkpoint_flag(predict)
    add_device_flags(predict)


def add_augment(sub) -> None:
    from cnntricks.augment.policy import POLICIES
    augment = sub.add_parser("augment", help="see what augmentation does, as a picture",
                             usage="cnntricks augment --preview [--policy NAME] [section.key=value ...] [--out FILE]",
                             description="Draw a grid: original training images, then each operation "
                                         "and the chosen policy applied to them (seed §1).")
    augment.add_argument("--preview", action="store_true", help="write the preview PNG")
    augment.add_argument("--policy", choices=POLICIES.names(),
                         help="the policy of the last row (default: augment.policy)")
    augment.add_argument("--out", default="augment_preview.png", help="PNG to write (default augment_preview.png)")
    augment.add_argument("--examples", type=int, default=6, help="images per row")


def add_preprocess(sub) -> None:
    preprocess = sub.add_parser("preprocess", help="the slides' whitening figure, on your data",
                                usage="cnntricks preprocess --demo [section.key=value ...] [--out FILE]",
                                description="Original images, the top eigenvectors, the images reduced to "
                                            "that many components, and the whitened images (seed §2).")
    preprocess.add_argument("--demo", action="store_true", help="write the demo PNG")
    preprocess.add_argument("--components", type=int, default=144, help="eigenvectors kept (default 144, as the slides)")
    preprocess.add_argument("--images", type=int, default=5000, help="training images to fit on")
    preprocess.add_argument("--out", default="whitening_demo.png", help="PNG to write (default whitening_demo.png)")


def add_experiment(sub) -> None:
    experiment = sub.add_parser("experiment", help="reproduce one of the seed's claims: figures and numbers",
                                usage="cnntricks experiment NAME [--out DIR] [--budget {smoke,small,full}] "
                                      "[--seeds N] [--seed S] [--data SOURCE]",
                                description="Run a named experiment; it writes its figure and numbers to "
                                            "--out and prints a short table.",
                                epilog=_experiment_list() + "\n\nexample:\n  cnntricks experiment init-stats "
                                       "--out results/init-stats",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    experiment.add_argument("name", metavar="NAME", help="which experiment (listed below)")
    experiment.add_argument("--out", metavar="DIR", help="where to write (default results/NAME)")
    experiment.add_argument("--budget", choices=["smoke", "small", "full"], default="small",
                            help="smoke: seconds, a check that it runs; small (default): 2-10 minutes a "
                                 "study on a 2-core CPU (docs/results.md); full: the whole training set, meant "
                                 "for a GPU")
    experiment.add_argument("--seeds", type=int, default=1, metavar="N", help="repeat over N seeds and report means (default 1)")
    experiment.add_argument("--seed", type=int, default=0, metavar="S", help="first seed (default 0)")
    experiment.add_argument("--data", metavar="SOURCE[:ROOT]",
                            help="a data.source (fashion-mnist, digits, ...) for experiments that read "
                                 "images, with its data.root after a colon where it needs one "
                                 "(image-folder:photos/, npz:arrays.npz); default: the experiment's own inputs")


def add_export(sub) -> None:
    export = sub.add_parser(
        "export", help="a trained run as ONNX, TorchScript or a safetensors state dict",
        usage="cnntricks export RUN_DIR [--format {onnx,torchscript,safetensors}] [--out FILE] [--input {float,uint8}] "
              "[--checkpoint NAME]",
        description="Export a run's model. ONNX and TorchScript take images as they come ((N, C, H, W) at the run's "
                    "size; --input float: float32 in [0, 1], uint8: 0-255) with the run's normalization, whitening "
                    "and test-time augmentation folded in, and give logits; the batch dimension is dynamic. ONNX is "
                    "checked with onnxruntime at batch 1 and 8 against PyTorch. safetensors writes the plain state "
                    "dict and model.json (classes, input size, normalization).",
        epilog="examples:\n  cnntricks export runs/x\n  cnntricks export runs/x --format onnx --out model.onnx "
               "--input uint8\n  cnntricks export runs/x --format safetensors --checkpoint best",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("run_dir", metavar="RUN_DIR")
    export.add_argument("--format", choices=["onnx", "torchscript", "safetensors"], default="onnx")
    export.add_argument("--out", metavar="FILE", help="where to write (default RUN_DIR/export/model.<ext>)")
    export.add_argument("--input", choices=["float", "uint8"], default="float",
                        help="the graph's input: float32 in [0, 1] (default) or uint8 0-255")
    add_checkpoint_flag(export)
    export.add_argument("--json", action="store_true", help="print what was written and checked as JSON")


def add_cache(sub) -> None:
    cache = sub.add_parser(
        "cache", help="decode an image folder once into its disk store (data.storage=disk)",
        usage="cnntricks cache [CONFIG.yaml] data.source=image-folder data.root=DIR data.image_size=N [--workers N]",
        description="Decode every image of an image folder at data.image_size into the file that data.storage=disk "
                    "trains from (in the cache: data.cache_dir), in worker processes, with a progress bar. A build "
                    "killed at any point goes on where it stood when run again; a changed folder (files added, "
                    "removed or modified) is built anew. Training with data.storage=disk builds it too when it is "
                    "missing; this command does it ahead, and says where it is and how big.",
        epilog="examples:\n  cnntricks cache data.source=image-folder data.root=photos/ data.image_size=224\n"
               "  cnntricks cache configs/my.yaml --workers 8",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    cache.add_argument("--workers", type=int, default=0, help="decoding processes (default: one per core)")


def add_doctor(sub) -> None:
    from cnntricks.doctor.findings import IDS
    doctor = sub.add_parser("doctor", help="what is wrong with a run, the evidence, and the fix (seed §7)",
                            usage="cnntricks doctor RUN_DIR|LOG [--map KEY=NAME,...] [--json] [--all] [--report] "
                                  "[--fail-on {warning,error}]",
                            description="Read a run directory (config.yaml, history.jsonl, stats.jsonl) and "
                                        "print the findings: what is wrong, the evidence, the seed's "
                                        "explanation, the advice and the config change that applies it.",
                            epilog=f"Finding ids: {', '.join(IDS)}.")
    doctor.add_argument("run_dir", metavar="RUN_DIR",
                        help="a cnntricks run or ensemble directory, a Lightning CSVLogger version folder (or its "
                             "metrics.csv), or a Keras CSVLogger file")
    doctor.add_argument("--map", metavar="KEY=NAME,...",
                        help="another tool's column names for the doctor's keys (loss, train_loss, train_acc, "
                             "val_loss, val_acc, lr), e.g. --map train_loss=my_loss,val_acc=valid/accuracy")
    doctor.add_argument("--json", action="store_true", help="print every finding (info included) as JSON")
    doctor.add_argument("--all", action="store_true", help="show info findings too (default: warning and error)")
    doctor.add_argument("--report", action="store_true", help="also (re)write report/ and report/index.html")
    doctor.add_argument("--fail-on", choices=["warning", "error"],
                        help="exit 5 when a finding of this severity or worse is found (for scripts)")


def add_rebalance(sub) -> None:
    rebalance = sub.add_parser("rebalance", help="post-hoc class rebalancing of a trained run, into a new run",
                               usage="cnntricks rebalance RUN_DIR --method {logit_adjust,tau_norm,crt} [--tau T] "
                                     "[--out DIR] [--json]",
                               description="Correct a run trained on class-imbalanced data without retraining its "
                                           "features: logit_adjust (Menon et al. 2021: logits - tau log prior), "
                                           "tau_norm (Kang et al. 2020: each classifier row divided by its norm to "
                                           "the power tau) or crt (Kang et al. 2020: the classifier re-trained, "
                                           "class-balanced, on the frozen features). tau is searched on the "
                                           "validation split unless given. The result is a new run directory that "
                                           "evaluate, predict, doctor and the report read.",
                               epilog="example:\n  cnntricks train data.imbalance=100 --run-dir runs/lt100\n"
                                      "  cnntricks rebalance runs/lt100 --method logit_adjust\n"
                                      "  cnntricks evaluate runs/lt100-logit_adjust",
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    rebalance.add_argument("run_dir", metavar="RUN_DIR")
    rebalance.add_argument("--method", required=True, choices=["logit_adjust", "tau_norm", "crt"])
    rebalance.add_argument("--tau", type=float, default=None,
                           help="logit_adjust, tau_norm: this tau instead of the best on the validation split")
    rebalance.add_argument("--out", default=None, help="the new run directory (default RUN_DIR-METHOD)")
    rebalance.add_argument("--json", action="store_true", help="print rebalance.json instead of a table")


def add_ensemble(sub) -> None:
    from cnntricks.ensemble.fusion import FUSIONS
    ensemble = sub.add_parser(
        "ensemble", help="combine trained runs into one classifier (seed §8)",
        usage="cnntricks ensemble RUN_DIR RUN_DIR [...] --out DIR [--fusion NAME] [--copy] [--json]\n"
              "       cnntricks ensemble --train [CONFIG.yaml] --seeds K --out DIR [--workers N] [--fusion NAME] "
              "[--folds] [section.key=value ...]\n       cnntricks ensemble --snapshots RUN_DIR --out DIR [--fusion NAME | --swa]\n"
              "       cnntricks ensemble --checkpoints RUN_DIR [--last K] --out DIR [--fusion NAME | --swa]\n"
              "       cnntricks ensemble --study TUNE_DIR --top K --out DIR [--fusion NAME]",
        description="Build an ensemble directory: members (the runs named, --seeds runs of one config trained "
                    "now, or the snapshots of one run trained with schedule.name=snapshot) and a fusion: mean (of the probabilities), vote (majority), weighted (weights fitted on the "
                    "validation split for the lowest NLL), stack (a logistic regression on the members' validation "
                    "log-probabilities), features (early fusion: a logistic regression on the members' penultimate "
                    "features of the training split). The test split is never fitted on. evaluate, predict and the "
                    "report read the directory like a run.",
        epilog="examples:\n  cnntricks ensemble --train --seeds 5 --out ens/seeds\n"
               "  cnntricks train schedule.name=snapshot schedule.cycles=5 train.epochs=30 --run-dir runs/snap\n"
               "  cnntricks ensemble --snapshots runs/snap --out ens/snap\n"
               "  cnntricks ensemble --snapshots runs/snap --swa --out runs/snap-swa\n"
               "  cnntricks ensemble --study tunes/lr --top 5 --out ens/top5\n"
               "  cnntricks ensemble runs/a runs/b runs/c --fusion weighted --out ens/abc\n"
               "  cnntricks evaluate ens/abc ; cnntricks predict ens/abc a.png",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ensemble.add_argument("runs", nargs="*", metavar="RUN_DIR", help="member runs (RUN_DIR@CHECKPOINT for another "
                          "checkpoint than the newest, e.g. runs/a@epoch-0005)")
    ensemble.add_argument("--out", required=True, metavar="DIR", help="the ensemble directory to write")
    ensemble.add_argument("--fusion", default="mean", choices=FUSIONS.names(), help="how members combine (default mean)")
    ensemble.add_argument("--train", nargs="?", const="", default=None, metavar="CONFIG.yaml",
                          help="train the members now: --seeds runs of this config (none: the default recipe) "
                               "with train.seed = S, S+1, ... and one validation split, in DIR/members/")
    ensemble.add_argument("--checkpoints", metavar="RUN_DIR",
                          help="the members are this run's kept checkpoints, one per epoch with "
                               "train.keep_checkpoints=0 (the newest --last K)")
    ensemble.add_argument("--last", type=int, default=None, metavar="K",
                          help="--checkpoints, --snapshots: only the newest K")
    ensemble.add_argument("--snapshots", metavar="RUN_DIR",
                          help="the members are this run's snapshots (one per cycle of schedule.name=snapshot)")
    ensemble.add_argument("--study", metavar="DIR", help="the members are the best runs of a search (cnntricks tune --out DIR)")
    ensemble.add_argument("--top", type=int, default=5, metavar="K", help="--study: how many of its best runs (default 5)")
    ensemble.add_argument("--seeds", type=int, default=5, metavar="K", help="--train: how many members (default 5)")
    ensemble.add_argument("--folds", action="store_true",
                          help="--train: the K members are a K-fold cross-validation (data.folds=K, member i "
                               "validates on fold i) instead of K seeds on one split; stack and weighted then fit "
                               "on their out-of-fold predictions")
    ensemble.add_argument("--workers", type=int, default=1, metavar="N",
                          help="--train: members trained in N parallel processes (default 1)")
    ensemble.add_argument("--copy", action="store_true",
                          help="copy each member's run files and checkpoint into DIR/members/ (default: refer to them)")
    ensemble.add_argument("--swa", action="store_true",
                          help="average the members' weights into one run instead (stochastic weight averaging: one "
                               "architecture, e.g. --snapshots RUN; batch-norm statistics recomputed)")
    ensemble.add_argument("--json", action="store_true", help="print summary.json instead of a table")


def add_tune(sub) -> None:
    tune = sub.add_parser(
        "tune", help="hyper-parameter search on Optuna; every trial a run",
        usage="cnntricks tune [CONFIG.yaml] --space SPACE.yaml --trials N --out DIR [--storage URL] [--workers N] "
              "[--pruner {median,halving,none}] [--folds K] [section.key=value ...]",
        description="Search the config keys of SPACE.yaml (types log, uniform, int, categorical) with Optuna's TPE "
                    "sampler for the best validation accuracy; each trial is a run directory in DIR/trials/, pruned "
                    "when its per-epoch validation accuracy falls behind. Storage: SQLite for one worker, a journal "
                    "file for several on this machine, --storage postgresql://... for workers on several machines. "
                    "The same command on the same --out continues a killed or finished search.",
        epilog="space.yaml:\n  optim.lr: {type: log, low: 0.01, high: 1.0}\n"
               "  model.width: {type: int, low: 16, high: 64, step: 16}\n"
               "  augment.policy: {type: categorical, choices: [flip, standard]}\n\nexamples:\n"
               "  cnntricks tune --space space.yaml --trials 40 --out tunes/lr train.epochs=6\n"
               "  cnntricks ensemble --study tunes/lr --top 5 --out ens/top5\n"
               "  cnntricks tune --space space.yaml --trials 20 --folds 5 --out tunes/cv\n"
               "  cnntricks ensemble --study tunes/cv --top 3 --fusion stack --out ens/cv-stack",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    tune.add_argument("--space", required=True, metavar="SPACE.yaml", help="the keys to search and their ranges")
    tune.add_argument("--trials", type=int, required=True, metavar="N", help="finished (complete or pruned) trials wanted")
    tune.add_argument("--out", required=True, metavar="DIR", help="the search's folder: tune.json, trials/, the storage")
    tune.add_argument("--storage", metavar="URL", help="an Optuna storage URL (postgresql://user@host/db, sqlite:///f.db); "
                      "default: OUT/study.db, or OUT/study.journal with --workers > 1")
    tune.add_argument("--workers", type=int, default=1, metavar="N", help="trials in N parallel processes (default 1)")
    tune.add_argument("--pruner", choices=["median", "halving", "none"], default="median",
                      help="stop trials whose validation accuracy falls behind (default median)")
    tune.add_argument("--folds", type=int, default=None, metavar="K",
                      help="every trial a K-fold cross-validation (K runs, data.folds=K), valued by the folds' mean "
                           "validation accuracy; its top trials stack on their out-of-fold predictions")
    tune.add_argument("--json", action="store_true", help="print tune.json instead of a table")


def add_config(sub) -> None:
    cfg = sub.add_parser("config", help="every configuration key, its default and its meaning")
    cfg.add_argument("section", nargs="?", help="only this section (data, optim, ...)")
    cfg.add_argument("--yaml", action="store_true", help="print the defaults as a YAML file")


def add_probe(sub) -> None:
    probe = sub.add_parser("probe", usage="cnntricks probe model.pretrained=SOURCE [CONFIG.yaml] [section.key=value ...] "
                           "[--out probe.png] [--json]", help="linear-probe accuracy per stage of pre-trained weights",
                           description="Fit a linear classifier (logistic regression) on each stage's pooled "
                                       "features of frozen pre-trained weights, for the data the data.* keys name: "
                                       "which layer's features transfer (seed §4; Yosinski et al. 2014).",
                           epilog="example:\n  cnntricks probe model.pretrained=runs/fmnist-base data.source=digits",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    probe.add_argument("--out", default="probe.png", help="where to draw the curve (default probe.png)")
    probe.add_argument("--json", action="store_true", help="print JSON instead of a table")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnntricks",
        description="Train image classifiers with every tip of Wei's 'Must Know Tips/Tricks in "
                    "Deep Neural Networks', and read the run like an expert.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_train(sub)
    add_evaluate(sub)
    add_predict(sub)
    add_augment(sub)
    add_preprocess(sub)
    add_experiment(sub)
    add_doctor(sub)
    add_rebalance(sub)
    add_ensemble(sub)
    add_tune(sub)
    add_export(sub)
    add_cache(sub)
    add_probe(sub)
    add_config(sub)
    return parser
