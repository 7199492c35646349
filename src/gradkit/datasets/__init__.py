"""Datasets from local files: IDX reading, MNIST and Fashion-MNIST (no network at import or load).

``python -m gradkit.datasets mnist`` (``make mnist``) and ``... fashion-mnist`` obtain the
files once (:mod:`gradkit.datasets.fetch`); ``load_mnist()`` then reads them offline.
"""

from .idx import read_idx
from .mnist import FASHION_MNIST_FILES, MNIST_FILES, data_home, load_fashion_mnist, load_mnist

__all__ = ["FASHION_MNIST_FILES", "MNIST_FILES", "data_home", "load_fashion_mnist", "load_mnist", "read_idx"]
