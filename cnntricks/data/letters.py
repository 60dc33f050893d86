"""Letters A–J drawn from the machine's font files: notMNIST's recipe (Bulatov 2011) in MNIST's format.

notMNIST is the letters A–J cut from thousands of public fonts; this source renders its own from
the TrueType / OpenType files installed here, as 28x28 gray images, white on black, uint8
(N, 1, 28, 28), classes "A".."J".

Fonts: every .ttf, .otf and .ttc (its first face) under data.root, or else under FONT_FOLDERS,
sorted by path. A file is skipped when Pillow cannot render it, when it is a symbol font (a
Microsoft Symbol or Adobe custom encoding maps A–J to other signs: Standard Symbols PS, the
D050000L dingbats), when a glyph of A–J is empty, missing (drawn as the font's .notdef) or the
same as another, when its A–J look too little like the other fonts' A–J (MIN_RESEMBLANCE: cmex10
draws brackets there), and when its A–J are exactly an earlier font's. scripts/setup.sh installs
a dozen small Debian font packages.

Split by font: the test split's fonts are never seen in training. Fonts are grouped into families
(the family name without weight, width and slope words: DejaVu Sans Condensed Bold is DejaVu
Sans), and families whose upright A–J nearly coincide are one (FreeSans is a copy of Nimbus Sans);
taken in the order of a hash of their names, families go to the test split while they fit in
data.test_fraction of the fonts.

Images: each (font, letter) pair gets an equal share (±1) of its letter's images, each with its own
draw: a stroke of 0-2 px at the MASTER_SIZE rendering (weight), a rotation of up to ±10°, the
glyph's ink scaled so its longer side is 20-24 px (MNIST fits its digits in a 20x20 box), centred
by its bounding box and shifted by up to 2 px. The training split has TRAIN_PER_CLASS images per
letter, or as many as data.subset needs once the validation split is carved, drawn with the run's
seed; the test split has TEST_PER_CLASS per letter drawn with TEST_SPLIT_SEED, the same for every
seed (sources.py). Both are cached in <cache>/letters/ as safetensors, keyed by the font files
(paths, sizes, modification times), Pillow's and FreeType's versions, the recipe and the seed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont, features
from safetensors import safe_open
from tqdm import tqdm

from cnntricks.config import DataConfig
from cnntricks.data.cache import cache_root, write_atomically
from cnntricks.data.errors import DataError, list_items
from cnntricks.data.memory import check_memory
from cnntricks.data.sources import SOURCES, TEST_SPLIT_SEED
from cnntricks.data.store import Store
from cnntricks.rundir import save_tensors

CLASSES = list("ABCDEFGHIJ")
FONT_FOLDERS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts")  # where fontconfig looks on Linux
FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
INSTALL_FONTS = "apt-get install fonts-dejavu-core fonts-liberation"
SIZE = 28  # pixels per side, as MNIST and notMNIST
TRAIN_PER_CLASS = 600  # training images per letter unless data.subset asks for more (6000 in all)
TEST_PER_CLASS = 300  # test images per letter: 3000 in all, a standard error under 1% on an accuracy
MASTER_SIZE = 64  # px: glyphs are drawn this large, then rotated and shrunk about 3x (antialiased)
BOX = (20.0, 24.0)  # px: range of the longer side of a glyph's ink (MNIST: a 20x20 box in 28x28)
MAX_ROTATION = 10.0  # degrees either way
MAX_SHIFT = 2  # px either way in x and y; BOX[1] + 2 * MAX_SHIFT <= SIZE keeps every glyph whole
STROKE_WIDTHS = (0, 1, 2)  # Pillow's stroke_width at MASTER_SIZE: stems up to ~1.4 px heavier at 28x28
# A font whose A–J resemble the other fonts' A–J less than this is not drawing letters (see
# `resemblance`). Measured: cmex10 0.27, D050000L 0.36, Last Resort 0.22; the lowest text fonts
# (Open Sans Condensed Light Italic, Z003 Chancery) 0.60.
MIN_RESEMBLANCE = 0.45
# Two fonts whose upright A–J differ by less than this (mean |difference| of 0..1 pixels) are one
# family. Measured, closest pair of faces: the copies FreeSans/Nimbus Sans 0.007, STIX/Nimbus Roman
# 0.009, FreeSerif/Nimbus Roman 0.016, DejaVu Math TeX Gyre/DejaVu Serif 0.025; the closest distinct
# designs (DejaVu Sans ExtraLight/Open Sans Light) 0.030.
DUPLICATE_DISTANCE = 0.027
PROGRESS_MIN_IMAGES = 20_000  # fewer render in a few seconds; no progress bar then
_NOTDEF = "\U0010FFFD"  # a private-use code point no text font maps: it draws the font's .notdef
_STYLE_WORDS = {"thin", "extralight", "light", "book", "regular", "medium", "semibold", "demibold", "demi", "bold",
                "extrabold", "black", "heavy", "narrow", "condensed", "cond", "semicondensed", "expanded",
                "smallcaps", "italic", "oblique", "display"}
_CACHE_FORMAT = 1  # bump when the rendering code or the cache file's layout changes
log = logging.getLogger(__name__)


@dataclass
class Font:
    path: Path
    family: str  # family name without weight, width and slope words: 'DejaVu Sans' for DejaVu Sans Condensed Bold
    glyphs: list[list[Image.Image]]  # [stroke][letter]: A–J at MASTER_SIZE per STROKE_WIDTHS, cropped to the ink
    upright: np.ndarray  # uint8 (10, SIZE, SIZE): A–J unrotated at BOX[0] px, for comparing fonts


def find_font_files(folders) -> list[Path]:
    """Every font file under `folders` (links resolved, each once), sorted: the data set's font order."""
    found = set()
    for folder in folders:
        for directory, _, names in os.walk(Path(folder).expanduser()):
            found.update(Path(directory, name).resolve() for name in names if name.lower().endswith(FONT_SUFFIXES))
    return sorted(path for path in found if path.is_file())


def _has_encoding(path: Path, encoding: str) -> bool:
    try:
        ImageFont.truetype(str(path), 8, encoding=encoding)
        return True
    except OSError:  # FreeType has no charmap of that encoding
        return False


def _draw(face: ImageFont.FreeTypeFont, text: str, stroke: int) -> Image.Image | None:
    """`text` white on black, cropped to its ink; None when it has none."""
    left, top, right, bottom = face.getbbox(text, stroke_width=stroke)
    canvas = Image.new("L", (right - left + 2, bottom - top + 2))
    ImageDraw.Draw(canvas).text((1 - left, 1 - top), text, font=face, fill=255, stroke_width=stroke, stroke_fill=255)
    ink = canvas.getbbox()
    return canvas.crop(ink) if ink else None


def place_glyph(glyph: Image.Image, box: float, angle: float = 0.0, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """uint8 (SIZE, SIZE): `glyph` rotated by `angle` degrees, scaled so its ink's longer side is `box`
    px, centred by its bounding box and moved by `shift` (x, y) px."""
    if angle:
        glyph = glyph.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
        glyph = glyph.crop(glyph.getbbox() or (0, 0, *glyph.size))
    scale = box / max(glyph.size)
    width, height = (max(1, round(side * scale)) for side in glyph.size)
    ink = np.asarray(glyph.resize((width, height), Image.Resampling.LANCZOS))  # LANCZOS: antialiased shrink
    image = np.zeros((SIZE, SIZE), np.uint8)
    left, top = SIZE // 2 + shift[0] - width // 2, SIZE // 2 + shift[1] - height // 2
    image[top:top + height, left:left + width] = ink
    return image


def family_name(face: ImageFont.FreeTypeFont, path: Path) -> str:
    words = (face.getname()[0] or path.stem).split()
    while len(words) > 1 and words[-1].lower() in _STYLE_WORDS:
        words.pop()
    return " ".join(words)


def load_font(path: Path) -> Font | str:
    """The font's glyphs of A–J, or why it cannot serve (the module docstring's first checks)."""
    try:
        face = ImageFont.truetype(str(path), MASTER_SIZE)
        if _has_encoding(path, "symb") or (_has_encoding(path, "ADBC") and not _has_encoding(path, "ADOB")):
            return "a symbol font (its encoding maps A–J to other signs)"
        glyphs = [[_draw(face, letter, stroke) for letter in CLASSES] for stroke in STROKE_WIDTHS]
        notdef = _draw(face, _NOTDEF, 0)
        family = family_name(face, path)
    except (OSError, ValueError) as err:
        return f"Pillow cannot render it ({err})"
    plain = glyphs[0]
    for letter, glyph in zip(CLASSES, plain):
        if glyph is None:
            return f"its {letter} is empty"
        if notdef is not None and glyph.size == notdef.size and glyph.tobytes() == notdef.tobytes():
            return f"it has no {letter} (draws the missing-glyph box)"
    if len({(glyph.size, glyph.tobytes()) for glyph in plain}) < len(CLASSES):
        return "some of its A–J are the same glyph"
    return Font(path, family, glyphs, np.stack([place_glyph(glyph, BOX[0]) for glyph in plain]))


def _uprights(fonts: list[Font]) -> torch.Tensor:
    return torch.from_numpy(np.stack([font.upright for font in fonts])).float() / 255  # (F, 10, SIZE, SIZE)


def resemblance(fonts: list[Font]) -> torch.Tensor:
    """(F,): how much each font's A–J look like the other fonts' mean A–J, the mean over letters of
    the cosine of the centred shapes, at half resolution so that a stem 1 px off still overlaps."""
    shapes = F.avg_pool2d(_uprights(fonts), 2).flatten(2)  # (F, 10, 196)
    others = (shapes.sum(0) - shapes) / max(len(fonts) - 1, 1)  # leave-one-out mean shapes
    centred, means = shapes - shapes.mean(2, keepdim=True), others - others.mean(2, keepdim=True)
    return F.cosine_similarity(centred, means, dim=2).mean(1)


def glyph_distances(fonts: list[Font]) -> torch.Tensor:
    """(F, F): mean absolute difference of the fonts' upright A–J, 0 (same) to 1."""
    shapes = _uprights(fonts).flatten(1)
    return torch.cdist(shapes, shapes, p=1) / shapes.shape[1]


def usable_fonts(paths: list[Path]) -> tuple[list[Font], list[str]]:
    """(fonts, ['path: why skipped', ...]) in the order of `paths`."""
    fonts, skipped = [], []
    for path in paths:
        font = load_font(path)
        if isinstance(font, str):
            skipped.append(f"{path}: {font}")
        else:
            fonts.append(font)
    if len(fonts) < 2:
        return fonts, skipped
    likeness = resemblance(fonts).tolist()
    same = (glyph_distances(fonts) == 0).tolist()
    kept = []
    for index, font in enumerate(fonts):
        if likeness[index] < MIN_RESEMBLANCE:
            skipped.append(f"{font.path}: its A–J do not look like letters (resemblance {likeness[index]:.2f} to "
                           f"the other fonts' A–J, below {MIN_RESEMBLANCE})")
        elif any(same[index][earlier] for earlier in kept):
            skipped.append(f"{font.path}: draws A–J exactly as an earlier font")
        else:
            kept.append(index)
    return [fonts[index] for index in kept], skipped


def font_families(fonts: list[Font]) -> list[list[int]]:
    """Font indices grouped by family name, and with every font within DUPLICATE_DISTANCE, transitively."""
    parent = list(range(len(fonts)))

    def root(index: int) -> int:
        while parent[index] != index:
            index = parent[index] = parent[parent[index]]
        return index

    first_of_family: dict[str, int] = {}
    for index, font in enumerate(fonts):
        parent[root(index)] = root(first_of_family.setdefault(font.family, index))
    for index, other in torch.nonzero(glyph_distances(fonts) < DUPLICATE_DISTANCE).tolist():
        parent[root(index)] = root(other)
    families: dict[int, list[int]] = {}
    for index in range(len(fonts)):
        families.setdefault(root(index), []).append(index)
    return list(families.values())


def split_fonts(fonts: list[Font], test_fraction: float) -> tuple[list[Font], list[Font]]:
    """(train fonts, test fonts), no family in both: in the order of a hash of their names, families
    join the test split while they fit in test_fraction of the fonts (the smallest one if none fits)."""
    named = [(" + ".join(sorted({fonts[index].family for index in family})), family)
             for family in font_families(fonts)]
    if len(named) < 2:
        raise DataError(f"data.source=letters: all {len(fonts)} usable fonts are of one family ({named[0][0]}); "
                        f"the test split holds fonts never seen in training, so at least 2 families are needed: "
                        f"install more fonts ({INSTALL_FONTS}) or add font files to data.root")
    named.sort(key=lambda pair: hashlib.sha256(pair[0].encode()).hexdigest())
    ordered = [family for _, family in named]
    room, test = test_fraction * len(fonts), []
    for family in ordered:
        if len(test) + len(family) <= room:
            test += family
    test = set(test or min(ordered, key=len))
    return ([font for index, font in enumerate(fonts) if index not in test],
            [font for index, font in enumerate(fonts) if index in test])


def render_letters(fonts: list[Font], per_class: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 1, SIZE, SIZE) images and int64 (N,) labels, N = 10 * per_class: each letter drawn
    per_class times, the fonts taken in turn, each image with its own stroke, rotation, size and shift."""
    count = per_class * len(CLASSES)
    labels = torch.arange(count) % len(CLASSES)
    font_index = (torch.arange(count) // len(CLASSES)) % len(fonts)
    stroke = torch.randint(len(STROKE_WIDTHS), (count,), generator=generator)
    angle = MAX_ROTATION * (2 * torch.rand(count, generator=generator) - 1)
    box = BOX[0] + (BOX[1] - BOX[0]) * torch.rand(count, generator=generator)
    shift = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (count, 2), generator=generator)
    images = np.empty((count, 1, SIZE, SIZE), np.uint8)
    draws = zip(font_index.tolist(), stroke.tolist(), labels.tolist(), box.tolist(), angle.tolist(), shift.tolist())
    for index, (font, weight, letter, side, degrees, offset) in enumerate(
            tqdm(draws, total=count, desc="rendering letters", unit="img", leave=False,
                 disable=True if count < PROGRESS_MIN_IMAGES else None)):
        images[index, 0] = place_glyph(fonts[font].glyphs[weight][letter], side, degrees, offset)
    return torch.from_numpy(images), labels


def train_per_class(cfg: DataConfig) -> int:
    """TRAIN_PER_CLASS, or enough that data.subset images remain after the validation split."""
    if cfg.subset is None:
        return TRAIN_PER_CLASS
    needed = math.ceil(cfg.subset / (1 - cfg.val_fraction) / len(CLASSES)) + 1  # +1: the split rounds
    return max(TRAIN_PER_CLASS, needed)


def _font_folders(cfg: DataConfig) -> list[Path]:
    if cfg.root is None:
        return [Path(folder).expanduser() for folder in FONT_FOLDERS]
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root: '{cfg.root}' is not a folder; for data.source=letters it is a folder of font "
                        f"files (.ttf .otf .ttc), or leave it unset to use the system's fonts")
    return [root]


def _cache_path_and_key(cfg: DataConfig, folders: list[Path], paths: list[Path], seed: int,
                        per_class: int) -> tuple[Path, str]:
    # One file per (folders, seed, count), so a changed font set overwrites its stale file; the key
    # inside says whether the fonts, Pillow, FreeType and the recipe are still the same.
    name = hashlib.sha256(json.dumps([[str(folder) for folder in folders], seed, per_class]).encode()).hexdigest()
    files = [(str(path), stat.st_size, stat.st_mtime_ns) for path in paths for stat in [path.stat()]]
    recipe = [_CACHE_FORMAT, SIZE, TEST_PER_CLASS, MASTER_SIZE, BOX, MAX_ROTATION, MAX_SHIFT, STROKE_WIDTHS,
              MIN_RESEMBLANCE, DUPLICATE_DISTANCE, cfg.test_fraction, PIL.__version__, features.version("freetype2")]
    key = hashlib.sha256(json.dumps([recipe, seed, per_class, files]).encode()).hexdigest()
    return cache_root(cfg) / "letters" / f"{name[:16]}.safetensors", key


def _read_cache(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as cached:
            if (cached.metadata() or {}).get("key") != key:
                return None
            return {name: cached.get_tensor(name) for name in cached.keys()}
    except Exception as err:  # any damage: the cache is only an optimization, render again
        log.warning("letters: ignoring unreadable cache %s (%s)", path, err)
        return None


def _render_splits(paths: list[Path], folders: list[Path], cfg: DataConfig, seed: int,
                   per_class: int) -> tuple[dict, dict]:
    fonts, skipped = usable_fonts(paths)
    if not fonts:
        raise DataError(f"data.source=letters: none of the {len(paths)} font files under "
                        f"{', '.join(map(str, folders))} can draw A–J; install fonts ({INSTALL_FONTS}):\n"
                        f"{list_items(skipped)}")
    train_fonts, test_fonts = split_fonts(fonts, cfg.test_fraction)
    log.info("letters: %d usable fonts of %d files, %d for training and %d for testing; skipped:\n%s",
             len(fonts), len(paths), len(train_fonts), len(test_fonts), list_items(skipped))
    train_images, train_labels = render_letters(train_fonts, per_class, torch.Generator().manual_seed(seed))
    test_images, test_labels = render_letters(test_fonts, TEST_PER_CLASS,
                                              torch.Generator().manual_seed(TEST_SPLIT_SEED))
    tensors = {"train_images": train_images, "train_labels": train_labels,
               "test_images": test_images, "test_labels": test_labels}
    metadata = {"train_fonts": json.dumps([str(font.path) for font in train_fonts]),
                "test_fonts": json.dumps([str(font.path) for font in test_fonts]),
                "skipped": json.dumps(skipped)}
    return tensors, metadata


@SOURCES.register("letters")
def load_letters(cfg: DataConfig, seed: int) -> tuple[Store, Store]:
    """(train, test) uint8 (N, 1, 28, 28), classes 'A'..'J'; no font is in both splits."""
    folders = _font_folders(cfg)
    paths = find_font_files(folders)
    if not paths:
        raise DataError(f"data.source=letters: no font files ({' '.join(FONT_SUFFIXES)}) under "
                        f"{', '.join(map(str, folders))}; install some with `{INSTALL_FONTS}` (or any other font "
                        f"package), or set data.root to a folder of font files")
    per_class = train_per_class(cfg)
    count = (per_class + TEST_PER_CLASS) * len(CLASSES)
    check_memory(2 * count * SIZE * SIZE, f"data.source=letters: rendering {count} images of 1x{SIZE}x{SIZE}",
                 "lower data.subset")  # 2: the rendered arrays, and the stores the splits copy from them
    cache_path, key = _cache_path_and_key(cfg, folders, paths, seed, per_class)
    tensors = _read_cache(cache_path, key)
    if tensors is None:
        tensors, metadata = _render_splits(paths, folders, cfg, seed, per_class)
        try:
            write_atomically(cache_path, lambda temporary: save_tensors(tensors, temporary, {"key": key, **metadata}))
        except OSError as err:
            log.warning("letters: cannot write the cache %s (%s); the next load renders again", cache_path, err)
    return (Store(tensors["train_images"], tensors["train_labels"], CLASSES),
            Store(tensors["test_images"], tensors["test_labels"], CLASSES))
