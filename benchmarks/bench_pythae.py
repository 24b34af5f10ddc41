"""Pythae's `TrainingPipeline` on the same data, model and optimizer as `bench_training.py`: one timed training, one JSON line.

Pythae (https://github.com/clementchadebec/benchmark_VAE) is a peer library of VAEs with its own trainer. This script
trains its `VAE` with a custom encoder and decoder that are the course's MLP (784-400-20 by default: the same layers,
sizes and ReLUs; the decoder ends in a sigmoid because Pythae's Bernoulli loss takes probabilities), with Adam at the
same learning rate and batch size, on the images that `bench_training.py` saved to a `.pt` file (the same statically
binarized tensors). It keeps Pythae's defaults otherwise: its progress bar and console printer (sent to stderr, which
the caller discards), its evaluation pass every epoch and the copy of the best model it keeps.

It times each epoch (training plus evaluation, wall-clock and CPU time of this process) with a Pythae callback, then
prints one JSON line: the medians per epoch and the final validation negative ELBO in nats per image (one draw of z
per image, summed over pixels and averaged over the images, as the other loops report it).

Pythae lives in its own environment (its pins need not match the course's), so this script is not a dependency:

    python -m venv ~/venvs/pythae && ~/venvs/pythae/bin/pip install torch torchvision pythae
    ~/venvs/pythae/bin/python benchmarks/bench_pythae.py --data images.pt --epochs 1

`bench_training.py` runs it that way, in turn with its other loops, when that environment exists (`--pythae PYTHON`).
The data file holds a dict {'train': (N,1,28,28) float32, 'valid': (M,1,28,28) float32} of values in {0,1}.
"""
import argparse, json, statistics, tempfile, time
import torch, torch.nn.functional as F
from torch import nn
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.pipelines import TrainingPipeline
from pythae.trainers import BaseTrainerConfig
from pythae.trainers.training_callbacks import TrainingCallback


class Encoder(BaseEncoder):
    "The course's MLP encoder: 784 -> hidden (ReLU) -> mean and log-variance of Z Gaussians."
    def __init__(self, n_latent:int, n_hidden:int, n_in:int=784):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(n_in, n_hidden), nn.ReLU())
        self.head = nn.Linear(n_hidden, 2*n_latent)
    def forward(self, x):
        mu, logvar = self.head(self.body(x)).chunk(2, dim=-1)
        return ModelOutput(embedding=mu, log_covariance=logvar)

class Decoder(BaseDecoder):
    "The course's MLP decoder: Z -> hidden (ReLU) -> 784 Bernoulli means (a sigmoid: Pythae's BCE takes probabilities)."
    def __init__(self, n_latent:int, n_hidden:int, shape=(1, 28, 28)):
        super().__init__()
        self.shape = shape
        self.net = nn.Sequential(nn.Linear(n_latent, n_hidden), nn.ReLU(), nn.Linear(n_hidden, 784))
    def forward(self, z):
        return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).view(len(z), *self.shape))

class EpochTimer(TrainingCallback):
    "Wall-clock and CPU seconds of each epoch: training, evaluation and Pythae's bookkeeping between them."
    def __init__(self): self.wall, self.cpu = [], []
    def on_epoch_begin(self, training_config, **kwargs): self.t0, self.c0 = time.perf_counter(), time.process_time()
    def on_epoch_end(self, training_config, **kwargs):
        self.wall.append(time.perf_counter() - self.t0); self.cpu.append(time.process_time() - self.c0)

@torch.no_grad()
def neg_elbo(model, x, bs:int=256)->float:
    "Negative ELBO in nats per image (one draw of z per image), written out as in bench_training.py."
    total = 0.
    for xb in x.split(bs):
        out = model.encoder(xb)
        mu, logvar = out.embedding, out.log_covariance
        z = mu + torch.randn_like(mu)*(0.5*logvar).exp()
        logits = model.decoder.net(z).view_as(xb)
        kl = -0.5*torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        total += float(F.binary_cross_entropy_with_logits(logits, xb, reduction='sum') + kl)
    return total/len(x)

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data', required=True, help="a .pt file with {'train': images, 'valid': images}")
    p.add_argument('--epochs', type=int, default=1)
    p.add_argument('--bs', type=int, default=128, help='training batch size (evaluation: twice as many)')
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--latent', type=int, default=20)
    p.add_argument('--hidden', type=int, default=400)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data = torch.load(a.data, weights_only=True)
    train, valid = data['train'].float(), data['valid'].float()
    torch.manual_seed(a.seed)
    model = VAE(VAEConfig(input_dim=tuple(train.shape[1:]), latent_dim=a.latent, reconstruction_loss='bce'),
                encoder=Encoder(a.latent, a.hidden), decoder=Decoder(a.latent, a.hidden, tuple(train.shape[1:])))
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as out:
        config = BaseTrainerConfig(output_dir=out, num_epochs=a.epochs, learning_rate=a.lr, per_device_train_batch_size=a.bs,
                                   per_device_eval_batch_size=2*a.bs, optimizer_cls='Adam', seed=a.seed,
                                   no_cuda=a.device == 'cpu')
        start = time.perf_counter()
        TrainingPipeline(training_config=config, model=model)(train_data=train, eval_data=valid, callbacks=[timer])
        total = time.perf_counter() - start
    model = model.to(a.device).eval()
    print(json.dumps(dict(wall=statistics.median(timer.wall), cpu=statistics.median(timer.cpu), total_wall=total,
                          epochs=a.epochs, valid_neg_elbo=neg_elbo(model, valid.to(a.device)), torch=torch.__version__,
                          threads=torch.get_num_threads())))
