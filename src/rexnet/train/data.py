"""Datasets by name (torchvision) or by path (ImageFolder trees, also inside a zip),
the ImageNet and CIFAR transforms, and per-sample seeded augmentation.

Augmentation randomness is a pure function of ``(seed, epoch, index)``: the same
sample gets the same crop whether it is drawn by one process or by rank 3 of 8,
before or after a resume.  That is what makes kill-and-resume and DDP-versus-single
runs comparable.
"""
from __future__ import annotations

import io
import logging
import os
import random
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import ConcatDataset, Dataset, Subset

from ..cores import available_cores
from ..models.build import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger("rexnet.data")

__all__ = ["DataError", "ImageTree", "SeededTransform", "build_dataset", "build_transforms",
           "balanced_subset", "holdout_split", "check_tree", "TORCHVISION_DATASETS", "TorchvisionSet", "IMAGE_EXTENSIONS",
           "default_data_root", "best_real_dataset", "decode_error_reason",
           "resolve_workers"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """A dataset is missing, malformed or holds unreadable files.

    Raised inside a DataLoader worker, it reaches the main process as torch re-raises
    it: the same class built from "Caught DataError in DataLoader worker process N.
    Original Traceback ...".  The constructor keeps only the original one-line message,
    so the user sees the file and the fix, not the worker's traceback.
    """

    def __init__(self, *args: Any) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (_unwrap_worker_message(args[0], type(self).__name__),)
        super().__init__(*args)


_WORKER_WRAPPER = re.compile(r"^Caught \w+ in [^\n]*\.\nOriginal Traceback")


def _unwrap_worker_message(msg: str, name: str) -> str:
    """The original message of an exception torch re-raised from a worker (else ``msg``)."""
    if not _WORKER_WRAPPER.match(msg):
        return msg
    last = None
    for last in re.finditer(rf"^(?:[\w.]+\.)?{re.escape(name)}: ", msg, flags=re.MULTILINE):
        pass
    return msg[last.end():].strip() if last else msg


_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def decode_error_reason(e: BaseException) -> str:
    """Why PIL could not decode an image, in one line, with no in-memory object reprs
    (PIL names the ``BytesIO`` it was given, which tells the user nothing)."""
    if isinstance(e, UnidentifiedImageError):
        return "not a recognised image (unknown format or damaged header)"
    text = " ".join(str(e).split()) or type(e).__name__
    return _OBJECT_REPR.sub("the file", text)


def default_data_root() -> Path:
    return Path(os.environ.get("REXNET_DATA", ".data"))


# ---------------------------------------------------------------------------- image trees
@dataclass
class ImageTree(Dataset):
    """``root/<class>/<image>`` read from a folder or from a zip (without extracting).

    Every regular, non-hidden file under a class folder counts: a file that is
    not a supported photo format, or that fails to decode, is an error naming
    the file, or, with ``skip_bad=True``, is skipped and counted in
    ``bad_files`` (decode failures are found when the sample is first read).
    """
    root: str | os.PathLike
    split: str | None = None
    transform: Callable | None = None
    skip_bad: bool = False
    samples: list[tuple[str, int]] = field(default_factory=list, init=False)
    classes: list[str] = field(default_factory=list, init=False)
    bad_files: list[str] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid = -1
        self.is_zip = self.root.suffix == ".zip"
        self._top = ""  # the folder inside a zip that holds the splits, found once by _list_files
        if not self.root.exists():
            raise DataError(f"no dataset at {self.root}: expected a folder or a .zip with "
                            f"train/<class>/<image> and val/ (or test/) inside")
        files = self._list_files()
        by_class: dict[str, list[str]] = {}
        for rel in files:
            parts = rel.split("/")
            if len(parts) < 2 or any(p.startswith(".") for p in parts):
                continue
            by_class.setdefault(parts[0], []).append(rel)
        if not by_class:
            where = f"{self.root}" + (f" (split {self.split!r})" if self.split else "")
            raise DataError(f"no class folders with files under {where}; expected <class>/<image> files")
        self.classes = sorted(by_class)
        for label, cls in enumerate(self.classes):
            for rel in sorted(by_class[cls]):
                if rel.lower().endswith(IMAGE_EXTENSIONS):
                    self.samples.append((rel, label))
                else:
                    self._bad(rel, "not a supported image format "
                              f"({', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)})")
        self.targets = [t for _, t in self.samples]

    # -- listing / reading ----------------------------------------------------------
    def _prefix(self) -> str:
        return f"{self.split}/" if self.split else ""

    def _list_files(self) -> list[str]:
        prefix = self._prefix()
        if self.is_zip:
            names = [n for n in _zip_names(self.root) if not n.endswith("/")]
            self._top = _zip_top(names, self.split)
            full = self._top + prefix
            return [n[len(full):] for n in names if n.startswith(full)]
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            raise DataError(f"no folder {base}; an image tree needs {self._prefix() or '<class>/'} inside {self.root}")
        return sorted(str(p.relative_to(base)).replace(os.sep, "/") for p in base.rglob("*") if p.is_file())

    def _zipfile(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():  # one handle per worker process
            self._zip = _zip(self.root)
            self._zip_pid = os.getpid()
        return self._zip

    def path_of(self, rel: str) -> str:
        prefix = self._prefix()
        if self.is_zip:
            return f"{self.root}!{self._top}{prefix}{rel}"
        return str(Path(self.root) / prefix / rel)

    def read_bytes(self, rel: str) -> bytes:
        if self.is_zip:
            return self._zipfile().read(self._top + self._prefix() + rel)
        return (Path(self.root) / self._prefix() / rel).read_bytes()

    def load(self, i: int) -> Image.Image:
        rel, _ = self.samples[i]
        try:
            img = Image.open(io.BytesIO(self.read_bytes(rel)))
            return img.convert("RGB")
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, zipfile.BadZipFile) as e:
            raise DataError(f"cannot decode image {self.path_of(rel)}: {decode_error_reason(e)}. Remove or replace it, "
                            f"or pass --skip-bad-images to skip unreadable files") from None

    def _bad(self, rel: str, why: str) -> None:
        if not self.skip_bad:
            raise DataError(f"bad file {self.path_of(rel)}: {why}. Remove it, or pass "
                            f"--skip-bad-images to skip and count such files")
        self.bad_files.append(rel)
        log.warning("skipping bad file %s: %s", self.path_of(rel), why)

    # -- Dataset -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        for attempt in range(len(self.samples)):
            j = (i + attempt) % len(self.samples)
            try:
                img = self.load(j)
            except DataError as e:
                if not self.skip_bad:
                    raise
                self._bad(self.samples[j][0], str(e))
                continue
            return (self.transform(img) if self.transform else img), self.samples[j][1]
        raise DataError(f"no readable image in {self.root}")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_zip"] = None  # zip handles do not cross process boundaries
        return state


def _zip_top(names: Sequence[str], split: str | None) -> str:
    """The folder inside a zip that holds the splits ('' or 'name/')."""
    want = f"{split}/" if split else ""
    for n in names:
        if want and (n.startswith(want)):
            return ""
        if want and f"/{want}" in n:
            return n[: n.index(f"/{want}") + 1]
    return ""


def check_tree(path: str | os.PathLike) -> dict[str, Any]:
    """Decode every file of an image tree (each split found) and report counts and bad files."""
    path = Path(path)
    report: dict[str, Any] = {"path": str(path), "splits": {}}
    splits = [s for s in ("train", "val", "test") if _has_split(path, s)] or [None]
    for split in splits:
        level = log.level
        log.setLevel(logging.ERROR)  # bad files are reported below, not warned about
        try:
            tree = ImageTree(path, split, skip_bad=True)
        finally:
            log.setLevel(level)
        bad = {tree.path_of(rel): "not a supported image format" for rel in tree.bad_files}
        counts: Counter[str] = Counter()
        for i, (rel, label) in enumerate(tree.samples):
            try:
                tree.load(i)
                counts[tree.classes[label]] += 1
            except DataError as e:
                bad[tree.path_of(rel)] = str(e).split(": ", 1)[-1].split(". Remove")[0]
        report["splits"][split or "."] = dict(classes=dict(sorted(counts.items())),
                                             images=sum(counts.values()), bad=bad)
    report["bad_total"] = sum(len(s["bad"]) for s in report["splits"].values())
    return report


_ZIPS: dict[str, tuple[tuple[int, ...], zipfile.ZipFile, tuple[str, ...]]] = {}


def _zip_entry(path: str | os.PathLike) -> tuple[zipfile.ZipFile, tuple[str, ...]]:
    """An open handle on the zip at ``path`` and its file names, shared by every dataset of
    this process that reads it, reopened when the file changes (or in a forked worker).
    Opening reads the whole central directory: 0.3-0.4 CPU-s for CIFAR-10's 60,000 entries,
    which a search trial otherwise paid about eight times (each split, each split check,
    the test set)."""
    key = str(Path(path).resolve())
    try:
        st = os.stat(key)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    version = (os.getpid(), st.st_ino, st.st_size, st.st_mtime_ns)
    held = _ZIPS.get(key)
    if held is None or held[0] != version:
        try:
            handle = zipfile.ZipFile(key)
        except zipfile.BadZipFile as e:
            raise DataError(f"{path} is not a readable zip file: {e}") from None
        names = held[2] if held is not None and held[0][1:] == version[1:] else \
            tuple(handle.namelist())
        _ZIPS[key] = held = (version, handle, names)
    return held[1], held[2]


def _zip(path: str | os.PathLike) -> zipfile.ZipFile:
    return _zip_entry(path)[0]


def _zip_names(path: str | os.PathLike) -> tuple[str, ...]:
    """The zip's entry names (``namelist()``), in its order."""
    return _zip_entry(path)[1]


def _has_split(path: Path, split: str) -> bool:
    if path.suffix == ".zip":
        names = _zip_names(path)
        top = _zip_top(names, split)
        return any(n.startswith(f"{top}{split}/") for n in names)
    return (path / split).is_dir()


# ---------------------------------------------------------------------------- torchvision sets
class TorchvisionSet(NamedTuple):
    """A dataset torchvision reads: its class, size, folder and how our splits map onto its own."""
    cls: str                                      # the torchvision.datasets class
    num_classes: int
    folder: str                                   # what the class looks for under the data root
    splits: dict[str, tuple[dict[str, Any], ...]]  # our split -> the class's keywords (several: concatenated)
    needs: tuple[str, ...] = ()                   # modules the class imports to read its files
    manual: str = ""                              # why and how to place the files by hand (no download)


def _split_arg(train: str | Sequence[str], val: str, **extra: Any) -> dict[str, tuple[dict[str, Any], ...]]:
    train = (train,) if isinstance(train, str) else tuple(train)
    return {"train": tuple(dict(split=s, **extra) for s in train), "val": (dict(split=val, **extra),)}


_TRAIN_FLAG = {"train": ({"train": True},), "val": ({"train": False},)}

# The fine-grained sets of the paper's Section 5.3 follow the usual transfer protocol
# (Kornblith et al., CVPR 2019): train on the official training images, with the official
# validation images added where a set has them, and report on the official test split,
# so our "val" is always the test split.  Tuning hyper-parameters instead wants the official
# train split against the official val split (torchvision's classes with split="val").
_CARS_BY_HAND = (
    "torchvision cannot download Stanford Cars: its original URL is gone (see "
    "https://github.com/pytorch/vision/issues/7545, whose comments point to copies). Place the "
    "files by hand as stanford_cars/cars_train/*.jpg, stanford_cars/cars_test/*.jpg, "
    "stanford_cars/cars_test_annos_withlabels.mat and stanford_cars/devkit/{cars_meta.mat, "
    "cars_train_annos.mat} under the data root (no --download needed)")

TORCHVISION_DATASETS: dict[str, TorchvisionSet] = {
    "cifar10": TorchvisionSet("CIFAR10", 10, "cifar-10-batches-py", _TRAIN_FLAG),
    "cifar100": TorchvisionSet("CIFAR100", 100, "cifar-100-python", _TRAIN_FLAG),
    "mnist": TorchvisionSet("MNIST", 10, "MNIST/raw", _TRAIN_FLAG),
    "fashion-mnist": TorchvisionSet("FashionMNIST", 10, "FashionMNIST/raw", _TRAIN_FLAG),
    # train 75,750 / test 25,250 (no val split)
    "food101": TorchvisionSet("Food101", 101, "food-101", _split_arg("train", "test")),
    # train 8,144 / test 8,041 (no val split)
    "stanford_cars": TorchvisionSet("StanfordCars", 196, "stanford_cars", _split_arg("train", "test"),
                                    needs=("scipy",), manual=_CARS_BY_HAND),
    # trainval 6,667 / test 3,333, the 100 variants
    "fgvc_aircraft": TorchvisionSet("FGVCAircraft", 100, "fgvc-aircraft-2013b",
                                    _split_arg("trainval", "test", annotation_level="variant")),
    # train 1,020 + val 1,020 / test 6,149
    "flowers102": TorchvisionSet("Flowers102", 102, "flowers-102", _split_arg(("train", "val"), "test"),
                                 needs=("scipy",)),
    # trainval 3,680 / test 3,669, the 37 breeds
    "oxford_pets": TorchvisionSet("OxfordIIITPet", 37, "oxford-iiit-pet",
                                  _split_arg("trainval", "test", target_types="category")),
    # train 1,880 + val 1,880 / test 1,880 of partition 1 (of the ten published ones)
    "dtd": TorchvisionSet("DTD", 47, "dtd/dtd", _split_arg(("train", "val"), "test", partition=1)),
}


# Offline copies that system packages install (Debian's dataset-fashion-mnist).
LOCAL_SOURCES = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}


def _unpack_local_copy(name: str, root: Path, sources: Sequence[Path] | None = None) -> None:
    """Unpack a system-installed copy of ``name`` (gzipped IDX files; ``sources``: where to
    look, default :data:`LOCAL_SOURCES`) into ``root`` for torchvision.

    Safe when several processes do it at once (a search's trials): each unpacks into its own
    temporary sibling folder and renames it into place in one step, so the folder is either
    absent or complete; the process that loses the race drops its copy."""
    import gzip
    import shutil
    import tempfile

    target = root / TORCHVISION_DATASETS[name].folder
    for source in LOCAL_SOURCES.get(name, []) if sources is None else sources:
        files = sorted(source.glob("*-ubyte.gz")) if source.is_dir() else []
        if len(files) < 4:
            continue
        if target.is_dir():   # unpacked (by another process) meanwhile: complete, since renamed whole
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.unpacking-", dir=target.parent))
        try:
            for f in files:
                with gzip.open(f, "rb") as src, open(tmp / f.name[:-3], "wb") as dst:
                    shutil.copyfileobj(src, dst)
                    dst.flush()
                    os.fsync(dst.fileno())
            try:
                os.rename(tmp, target)
            except OSError:
                if not target.is_dir():
                    raise
                return    # another process renamed its copy first
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("unpacked the local copy of %s from %s into %s", name, source, target)
        return


def _labels_of(ds: Dataset) -> list[int] | None:
    """Every sample's label without decoding images (for class-balanced subsets)."""
    if getattr(ds, "targets", None) is not None:
        return [int(t) for t in ds.targets]
    if getattr(ds, "_labels", None) is not None:  # Food101, FGVCAircraft, Flowers102, OxfordIIITPet, DTD
        return [int(t) for t in ds._labels]
    if getattr(ds, "_samples", None) is not None:  # StanfordCars: (path, label) pairs
        return [int(t) for _, t in ds._samples]
    return None


def _torchvision_dataset(name: str, split: str, transform: Callable | None, root: Path,
                         download: bool) -> Dataset:
    import importlib.util

    import torchvision.datasets as tvd

    entry = TORCHVISION_DATASETS[name]
    cls = getattr(tvd, entry.cls)
    where = root / entry.folder
    if not download and not where.is_dir():
        _unpack_local_copy(name, root)
    fetch = download and not entry.manual  # a set torchvision cannot download is looked for, not fetched
    how = entry.manual or ("Run with --download true to fetch it (needs internet; `rexnet eval` takes a "
                           "bare --download)")
    missing = [m for m in entry.needs if importlib.util.find_spec(m) is None]
    needs = (f"{name} needs {', '.join(missing)} to read its annotation files: pip install "
             f"{' '.join(missing)} (or pip install 'rexnet[finegrained]')") if missing else ""
    if needs and (fetch or where.is_dir()):  # else the missing files are said first, this after them
        raise DataError(needs)
    try:
        parts = [cls(str(root), transform=transform, download=fetch, **kw) for kw in entry.splits[split]]
    except RuntimeError as e:
        if fetch:
            raise DataError(f"could not download {name} into {root} ({e}). Offline? Copy the "
                            f"files into {where} by other means, or point --data at an "
                            f"image folder / zip") from None
        raise DataError(f"{name} not found: expected its files under {where}. {how}. Or set --data-root "
                        f"(or $REXNET_DATA) to a folder that holds it, or point --data at an "
                        f"ImageFolder tree or zip" + (f". Also, {needs}" if needs else "")) from None
    except OSError as e:
        raise DataError(f"could not get {name} into {root}: {e}. Offline? Copy the files into "
                        f"{where} by other means") from None
    ds = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    ds.classes = list(getattr(parts[0], "classes", None) or range(entry.num_classes))
    labels = [_labels_of(p) for p in parts]
    if getattr(ds, "targets", None) is None and all(lab is not None for lab in labels):
        ds.targets = [t for lab in labels for t in lab]  # balanced_subset reads these
    return ds


def build_dataset(data: str, split: str, transform: Callable | None = None, root: str | None = None,
                  download: bool = False, skip_bad: bool = False) -> Dataset:
    """A dataset by name (a key of :data:`TORCHVISION_DATASETS`: ``cifar10``, ``food101``, ...)
    or by path (an ImageFolder tree with ``train/`` and ``val/`` or ``test/``, or a zip of one).

    ``split`` is ``train`` or ``val`` (``val`` reads ``test/`` where there is no ``val/``; for
    a named set, its table entry says which of its splits each one reads).
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if data in TORCHVISION_DATASETS:
        gray = data in ("mnist", "fashion-mnist")
        tf = transform
        if gray and transform is not None:  # the models take 3 channels
            tf = lambda img, _t=transform: _t(img.convert("RGB"))  # noqa: E731
        return _torchvision_dataset(data, split, tf,
                                    Path(root) if root else default_data_root(), download)
    path = Path(data)
    if not path.exists():
        raise DataError(f"unknown dataset {data!r}: not one of {sorted(TORCHVISION_DATASETS)} and "
                        f"no file or folder at {path}")
    name = split
    if split == "val" and not _has_split(path, "val"):
        name = "test"
    if not _has_split(path, name):
        raise DataError(f"{path} has no {split}/ folder" + (" (nor test/)" if split == "val" else "")
                        + "; an image tree needs train/<class>/... and val/<class>/...")
    return ImageTree(path, name, transform, skip_bad=skip_bad)


def best_real_dataset(choice: str = "auto", progress: Callable[[str], Any] | None = print) -> str:
    """The best real dataset at hand: ``choice`` unless it is ``auto``; else CIFAR-10 when
    present or downloadable (20 s socket timeout), else Fashion-MNIST from the Debian
    package.  Never synthetic data; ``ValueError`` saying how to get some when none is there."""
    import socket

    if choice != "auto":
        return choice
    say = progress or (lambda msg: None)
    if (default_data_root() / TORCHVISION_DATASETS["cifar10"].folder).is_dir():
        return "cifar10"
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        say("CIFAR-10 is not in the data root; trying to download it ...")
        build_dataset("cifar10", "train", download=True)
        build_dataset("cifar10", "val", download=True)
        return "cifar10"
    except (DataError, OSError) as e:
        say(f"  no download ({str(e)[:120]}); falling back to Fashion-MNIST")
    finally:
        socket.setdefaulttimeout(old)
    if any(p.is_dir() for p in LOCAL_SOURCES["fashion-mnist"]) or \
            (default_data_root() / TORCHVISION_DATASETS["fashion-mnist"].folder).is_dir():
        return "fashion-mnist"
    raise ValueError("no real dataset for the demo's search: pass --search-data PATH (a CIFAR-10 image "
                     "tree or zip), connect to the internet for CIFAR-10, or `apt-get install "
                     "dataset-fashion-mnist`; or skip the search with --no-search")


def balanced_subset(ds: Dataset, n: int | None) -> Dataset:
    """Exactly ``min(n, len(ds))`` samples, balanced over classes where labels are known.

    Classes take turns (the first sample of each class, then the second, ...), so
    class counts differ by at most one, and a class that runs out leaves its turns
    to the others.  The chosen samples keep the dataset's order.  ``n`` None or 0
    means all; a negative ``n`` is a :class:`DataError`.
    """
    if n is not None and n < 0:
        raise DataError(f"a subset of {n} samples: the number of samples must be positive (0 or none = all); "
                        f"check --train-subset, --val-subset, --limit or --images")
    if not n or n >= len(ds):
        return ds
    targets = getattr(ds, "targets", None)
    if targets is None:
        return Subset(ds, range(n))
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_class.setdefault(int(t), []).append(i)
    queues = [by_class[c] for c in sorted(by_class)]
    idx: list[int] = []
    for turn in range(max(len(q) for q in queues)):
        idx.extend(q[turn] for q in queues if turn < len(q))
        if len(idx) >= n:
            break
    return _subset(ds, sorted(idx[:n]))


def _subset(ds: Dataset, indices: Sequence[int]) -> Subset:
    """``Subset`` that keeps the classes and, where known, the labels (so it can be subset again in balance)."""
    sub = Subset(ds, list(indices))
    sub.classes = getattr(ds, "classes", None)  # type: ignore[attr-defined]
    targets = getattr(ds, "targets", None)
    if targets is not None:
        sub.targets = [targets[i] for i in sub.indices]  # type: ignore[attr-defined]
    return sub


def holdout_split(ds: Dataset, n: int, seed: int = 0) -> tuple[Subset, Subset]:
    """``(rest, held_out)``: ``n`` samples of ``ds`` held out for model selection, balanced over
    classes (counts differ by at most one) and drawn with ``seed`` alone, so every run, arm and
    seed of an experiment holds out the same images; ``rest`` is everything else, in order."""
    targets = getattr(ds, "targets", None)
    if targets is None:
        raise DataError(f"a held-out split needs labelled data ({type(ds).__name__} has no targets); "
                        f"use --val-subset on the test split instead")
    if not 0 < n < len(ds):
        raise DataError(f"--holdout {n}: hold out between 1 and {len(ds) - 1} of the {len(ds)} training images")
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_class.setdefault(int(t), []).append(i)
    queues = [list(rng.permutation(by_class[c])) for c in sorted(by_class)]
    held: list[int] = []
    for turn in range(max(len(q) for q in queues)):
        held.extend(int(q[turn]) for q in queues if turn < len(q))
        if len(held) >= n:
            break
    held_set = set(held[:n])
    return (_subset(ds, [i for i in range(len(ds)) if i not in held_set]), _subset(ds, sorted(held_set)))


def resolve_workers(workers: int | str | None, cap: int = 8) -> int:
    """DataLoader worker processes: an explicit count as given; ``auto`` (or None) is
    ``min(cap, cores - 1)``, leaving one core to the training process (0 on one core:
    loading then runs in the main process)."""
    if workers is None or (isinstance(workers, str) and workers.strip().lower() in ("auto", "none", "")):
        return max(0, min(cap, available_cores() - 1))
    n = int(workers)
    if n < 0:
        raise DataError(f"workers must be >= 0 or auto, got {n}")
    return n


# ---------------------------------------------------------------------------- transforms
def build_transforms(kind: str, input_size: int, train: bool, *, auto_augment: str | None = None,
                     color_jitter: float = 0.4, re_prob: float = 0.0, re_mode: str = "pixel",
                     crop_pct: float = 0.875, interpolation: str = "bicubic",
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Callable:
    """``imagenet``: timm's transform factory (RandomResizedCrop, flip, RandAugment,
    colour jitter, random erasing; eval resize + centre crop at ``crop_pct``).
    ``cifar``: pad-and-crop (padding = size / 8), flip, normalise."""
    if kind == "imagenet":
        from timm.data import create_transform

        return create_transform(input_size, is_training=train, auto_augment=auto_augment if train else None,
                                color_jitter=color_jitter if train else None, re_prob=re_prob if train else 0.0,
                                re_mode=re_mode, crop_pct=crop_pct, interpolation=interpolation,
                                mean=tuple(mean or IMAGENET_MEAN), std=tuple(std or IMAGENET_STD))
    if kind == "cifar":
        return CifarTransform(input_size, train, mean or CIFAR_MEAN, std or CIFAR_STD)
    raise ValueError(f"unknown transform recipe {kind!r}; use 'imagenet' or 'cifar'")


class CifarTransform:
    """The CIFAR recipe on uint8 tensors: [resize] -> zero-pad by size/8 and random crop
    -> random horizontal flip -> normalise (train); [resize] -> centre crop -> normalise (eval).

    Written directly on tensors with an explicit generator: about 10x cheaper per
    sample than the equivalent torchvision v2 pipeline under global reseeding,
    which matters when a small network trains at hundreds of images per second.
    """
    accepts_generator = True

    def __init__(self, size: int, train: bool, mean: Sequence[float] = CIFAR_MEAN,
                 std: Sequence[float] = CIFAR_STD) -> None:
        self.size, self.train, self.pad = int(size), train, max(1, int(size) // 8)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1) * 255

    def __call__(self, img: Any, generator: torch.Generator | None = None) -> torch.Tensor:
        if isinstance(img, Image.Image):
            x = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)
        else:
            x = torch.as_tensor(img)
        size = self.size
        if min(x.shape[-2:]) != size:
            from torchvision.transforms.v2 import functional as TF
            x = TF.resize(x, size, antialias=True)
        h, w = x.shape[-2:]
        if self.train:
            p = self.pad
            x = torch.nn.functional.pad(x, (p, p, p, p))
            i, j = torch.randint(0, h + 2 * p - size + 1, (1,), generator=generator).item(), \
                torch.randint(0, w + 2 * p - size + 1, (1,), generator=generator).item()
            x = x[:, i:i + size, j:j + size]
            if torch.rand(1, generator=generator).item() < 0.5:
                x = x.flip(-1)
        else:
            i, j = (h - size) // 2, (w - size) // 2
            x = x[:, i:i + size, j:j + size]
        return (x.float() - self.mean) / self.std


class SeededTransform:
    """Applies ``transform`` with its randomness seeded from ``(seed, epoch, index)``.

    A transform with ``accepts_generator`` gets a private generator; any other
    (timm's RandAugment uses Python's and NumPy's RNGs) runs with the global RNGs
    seeded and restored afterwards, so model randomness (dropout, drop-path) is
    unaffected by how many samples were loaded.
    """

    def __init__(self, transform: Callable, seed: int) -> None:
        self.transform, self.seed, self.epoch = transform, int(seed), 0

    def __call__(self, img: Any, index: int) -> Any:
        s = (self.seed * 1_000_003 + self.epoch * 100_003 + index) % (2**31 - 1)
        if getattr(self.transform, "accepts_generator", False):
            return self.transform(img, generator=torch.Generator().manual_seed(s))
        py, nps, ts = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)
        try:
            return self.transform(img)
        finally:
            random.setstate(py)
            np.random.set_state(nps)
            torch.random.set_rng_state(ts)


def eval_images(data: str, n: int, input_size: int = 32, root: str | None = None, download: bool = False,
                skip_bad: bool = False) -> torch.Tensor:
    """The first ``n`` class-balanced validation images of ``data`` as one ``(n, 3, H, W)``
    tensor with the evaluation transform (CIFAR's at <= 32 px, else ImageNet's): the
    real images the rank analyses run on."""
    ds = balanced_subset(build_dataset(data, "val", None, root, download, skip_bad), n)
    ds = IndexedDataset(ds, build_transforms("cifar" if input_size <= 32 else "imagenet", input_size, False))
    return torch.stack([ds[i][0] for i in range(len(ds))])


class IndexedDataset(Dataset):
    """Wraps a dataset whose items are ``(image, label)`` so a :class:`SeededTransform`
    sees each item's index; can cache decoded images in memory."""

    def __init__(self, base: Dataset, transform: SeededTransform | Callable | None,
                 cache: bool = False) -> None:
        self.base, self.transform = base, transform
        self.classes = getattr(base, "classes", None)
        self._cache: list[tuple[Any, int]] | None = None
        if cache:
            self._cache = [base[i] for i in range(len(base))]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        img, label = self._cache[i] if self._cache is not None else self.base[i]
        if isinstance(img, Image.Image) and img.mode != "RGB":  # MNIST-style greyscale
            img = img.convert("RGB")
        if isinstance(self.transform, SeededTransform):
            img = self.transform(img, i)
        elif self.transform is not None:
            img = self.transform(img)
        return img, label
