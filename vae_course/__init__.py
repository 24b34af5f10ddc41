__version__ = "0.0.1"

import warnings
# fastai 2.8 calls `torch.jit.script` at import, which torch >= 2.10 deprecates: an upstream warning that would
# otherwise open every lesson. Only that message is silenced.
warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)
