"The public API of vae_course: `from vae_course.all import *`."
from fastai.torch_core import default_device, set_seed  # the course's seed and device helpers (fastai's own)
from .core import *
from .config import *
from .files import *
from .data import *
from .autoencoder import *
from .encoder import *
from .sampling import *
from .decoder import *
from .losses import *
from .model import *
from .training import *
from .metrics import *
from .fid import *
from .explorer import *
from .cli import *
from .images import *
from .conditional import *
from .disentangle import *
from .vqvae import *
from .priors import *
from .hierarchical import *
from .diagrams import *
