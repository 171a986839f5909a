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
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Subset

from ..io import atomic_path
from ..models.build import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger("rexnet.data")

__all__ = ["DataError", "ImageTree", "SeededTransform", "build_dataset", "build_transforms",
           "balanced_subset", "check_tree", "TORCHVISION_DATASETS", "IMAGE_EXTENSIONS", "default_data_root",
           "best_real_dataset"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """A dataset is missing, malformed or holds unreadable files."""


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
            names = [n for n in self._zipfile().namelist() if not n.endswith("/")]
            self._top = _zip_top(names, self.split)
            full = self._top + prefix
            return [n[len(full):] for n in names if n.startswith(full)]
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            raise DataError(f"no folder {base}; an image tree needs {self._prefix() or '<class>/'} inside {self.root}")
        return sorted(str(p.relative_to(base)).replace(os.sep, "/") for p in base.rglob("*") if p.is_file())

    def _zipfile(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():  # one handle per worker process
            try:
                self._zip = zipfile.ZipFile(self.root)
            except zipfile.BadZipFile as e:
                raise DataError(f"{self.root} is not a readable zip file: {e}") from None
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
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise DataError(f"cannot decode image {self.path_of(rel)}: {e}. Remove or replace it, "
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


def _has_split(path: Path, split: str) -> bool:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        top = _zip_top(names, split)
        return any(n.startswith(f"{top}{split}/") for n in names)
    return (path / split).is_dir()


# ---------------------------------------------------------------------------- torchvision sets
TORCHVISION_DATASETS = {
    "cifar10": ("CIFAR10", 10, "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", 100, "cifar-100-python"),
    "mnist": ("MNIST", 10, "MNIST/raw"),
    "fashion-mnist": ("FashionMNIST", 10, "FashionMNIST/raw"),
}


# Offline copies that system packages install (Debian's dataset-fashion-mnist).
LOCAL_SOURCES = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}


def _unpack_local_copy(name: str, root: Path) -> None:
    """Unpack a system-installed copy of ``name`` (gzipped IDX files) into ``root`` for torchvision."""
    import gzip
    import shutil

    _, _, folder = TORCHVISION_DATASETS[name]
    target = root / folder
    for source in LOCAL_SOURCES.get(name, []):
        files = sorted(source.glob("*-ubyte.gz")) if source.is_dir() else []
        if len(files) < 4:
            continue
        target.mkdir(parents=True, exist_ok=True)
        for f in files:
            out = target / f.name[:-3]
            if not out.exists():
                with atomic_path(out) as tmp, gzip.open(f, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        log.info("unpacked the local copy of %s from %s into %s", name, source, target)
        return


def _torchvision_dataset(name: str, train: bool, transform: Callable | None, root: Path,
                         download: bool) -> Dataset:
    import torchvision.datasets as tvd

    cls_name, _, folder = TORCHVISION_DATASETS[name]
    cls = getattr(tvd, cls_name)
    if not download and not (root / folder).is_dir():
        _unpack_local_copy(name, root)
    try:
        ds = cls(str(root), train=train, transform=transform, download=download)
    except RuntimeError as e:
        if download:
            raise DataError(f"could not download {name} into {root} ({e}). Offline? Copy the "
                            f"files into {root / folder} by other means, or point --data at an "
                            f"image folder / zip") from None
        raise DataError(f"{name} not found: expected its files under {root / folder}. Pass "
                        f"--download to fetch it (needs internet), set --data-root (or "
                        f"$REXNET_DATA) to a folder that holds it, or point --data at an "
                        f"ImageFolder tree or zip") from None
    except OSError as e:
        raise DataError(f"could not get {name} into {root}: {e}. Offline? Copy the files into "
                        f"{root / folder} by other means") from None
    ds.classes = list(getattr(ds, "classes", range(TORCHVISION_DATASETS[name][1])))
    return ds


def build_dataset(data: str, split: str, transform: Callable | None = None, root: str | None = None,
                  download: bool = False, skip_bad: bool = False) -> Dataset:
    """A dataset by name (``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``) or by
    path (an ImageFolder tree with ``train/`` and ``val/`` or ``test/``, or a zip of one).

    ``split`` is ``train`` or ``val`` (``val`` reads ``test/`` where there is no ``val/``).
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if data in TORCHVISION_DATASETS:
        gray = data in ("mnist", "fashion-mnist")
        tf = transform
        if gray and transform is not None:  # the models take 3 channels
            tf = lambda img, _t=transform: _t(img.convert("RGB"))  # noqa: E731
        return _torchvision_dataset(data, split == "train", tf,
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
    if (default_data_root() / TORCHVISION_DATASETS["cifar10"][2]).is_dir():
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
            (default_data_root() / TORCHVISION_DATASETS["fashion-mnist"][2]).is_dir():
        return "fashion-mnist"
    raise ValueError("no real dataset for the demo's search: pass --search-data PATH (a CIFAR-10 image "
                     "tree or zip), connect to the internet for CIFAR-10, or `apt-get install "
                     "dataset-fashion-mnist`; or skip the search with --no-search")


def balanced_subset(ds: Dataset, n: int | None) -> Dataset:
    """The first ``n`` samples, balanced over classes where labels are known."""
    if not n or n >= len(ds):
        return ds
    targets = getattr(ds, "targets", None)
    if targets is None:
        return Subset(ds, range(n))
    targets = [int(t) for t in targets]
    classes = sorted(set(targets))
    per = max(1, n // len(classes))
    taken: dict[int, int] = {}
    idx = []
    for i, t in enumerate(targets):
        if taken.get(t, 0) < per:
            idx.append(i)
            taken[t] = taken.get(t, 0) + 1
    sub = Subset(ds, idx[:n])
    sub.classes = getattr(ds, "classes", None)  # type: ignore[attr-defined]
    return sub


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
