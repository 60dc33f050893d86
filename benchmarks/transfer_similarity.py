"""Which measurement tells similar from different data? Three candidates, on a finished transfer study.

For the source of `cnntricks experiment transfer` and each target of the study (Fashion-MNIST classes
5-9, the letters, and, for scale, the source's own classes and scikit-learn's digits), prints:
  probes     linear-probe test accuracy per stage of the source (the advisor's measure; Yosinski et
             al. 2014): similar data should peak at the top stage, different data earlier
  random     the same probes on a randomly initialized network of the same shape: the gain of the
             source's features over features that carry no training
  bn shift   per batch-norm layer, the new data's per-channel mean against the source's running mean,
             in running-std units (mean over channels), and |log| of the variance ratio: the domain
             shift the source's statistics see (AdaBN's view)

    python benchmarks/transfer_similarity.py results/transfer          # after the study
    python benchmarks/transfer_similarity.py /tmp/study --per-class 500
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from cnntricks import config
from cnntricks.data import load_splits
from cnntricks.experiments.transfer import study_files
from cnntricks.nn.models import create_model
from cnntricks.transfer.probe import pretrained_model, probe


@torch.no_grad()
def bn_shift(model: nn.Module, preprocess, images: torch.Tensor) -> list[tuple[float, float]]:
    layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    seen: dict = {}
    hooks = [bn.register_forward_pre_hook(lambda m, i: seen.__setitem__(m, i[0])) for bn in layers]
    model.eval()
    model(preprocess(images[:512]))
    for hook in hooks:
        hook.remove()
    shifts = []
    for bn in layers:
        x = seen[bn]
        scale = (bn.running_var + bn.eps).sqrt()
        mean_shift = ((x.mean((0, 2, 3)) - bn.running_mean).abs() / scale).mean().item()
        variance = (x.var((0, 2, 3)).clamp_min(1e-8) / scale.square()).log().abs().mean().item()
        shifts.append((round(mean_shift, 3), round(variance, 3)))
    return shifts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="transfer_similarity.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Exit status: 0 = printed; 2 = no study there.")
    parser.add_argument("study", type=Path, help="the --out folder of cnntricks experiment transfer")
    parser.add_argument("--per-class", type=int, default=20, help="training images per class (default 20)")
    args = parser.parse_args(argv)
    source, files = args.study / "source", study_files(args.study)
    if not (source / "config.yaml").is_file():
        print(f"transfer_similarity: {source} holds no source run; run cnntricks experiment transfer first",
              file=sys.stderr)
        return 2
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    width = config.load(source / "config.yaml").model.width
    targets = [("source classes", ["data.source=npz", f"data.root={files['source']}"], 5),
               ("similar", ["data.source=npz", f"data.root={files['similar']}"], 5),
               ("different (letters)", ["data.source=letters"], 10), ("digits", ["data.source=digits"], 10)]
    for name, overrides, classes in targets:
        cfg = config.load(None, [*overrides, f"data.subset={args.per_class * classes}", f"model.width={width}",
                                 f"model.pretrained={source}"])
        splits = load_splits(cfg.data, 0)
        model, preprocess, _ = pretrained_model(cfg, splits, torch.device("cpu"))
        probes = [round(row.test_acc, 3) for row in probe(model, preprocess, splits.train, splits.test,
                                                           torch.device("cpu"))]
        torch.manual_seed(0)
        shape = splits.train.images.shape[1:]
        random = create_model(cfg.model, shape[0], classes, tuple(shape[1:]))
        randoms = [round(row.test_acc, 3) for row in probe(random, preprocess, splits.train, splits.test,
                                                            torch.device("cpu"))]
        print(f"{name}: probes {probes}; random network {randoms}; "
              f"bn shift (mean, |log var|) {bn_shift(model, preprocess, splits.train.images)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
