"""Issue 10, more than one process: `vae-course train` started by `torchrun` as 2 CPU processes (gloo), on a small MNIST
folder (conftest). The validation columns of its metrics file are checked against a one-process computation on the
same weights (its last.pt) and the same validation images, so that a wrong reduction, or each process validating only
its own share, fails; the files are written once, by the main process; a 2-process run resumes."""
import json, os, subprocess, sys

import pandas as pd, pytest, torch

pytest.importorskip('accelerate', reason='training in more than one process needs accelerate (pip install vae_course[multi])')

from torch.distributions import Bernoulli, Normal, kl_divergence
from vae_course.cli import _run_dls
from vae_course.data import dls_from_tensors, get_dls, set_seed
from vae_course.model import VAE, load_checkpoint
from vae_course.training import ShardedBatches, vae_learner

# validation batches of 64: 150 held-out images in 4 pieces, 76 + 74 per process
QUICK = ['--latent', '4', '--hidden', '32', '--bs', '32']


def torchrun(*argv, n=2, timeout=300):
    "`torchrun --standalone --nproc_per_node n -m vae_course.cli ...` in a fresh process: (exit code, stdout, stderr)."
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={n}',
           '-m', 'vae_course.cli', *map(str, argv)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope='module')
def run2(mnist_root, tmp_path_factory):
    "A 2-process run of 2 epochs."
    out = tmp_path_factory.mktemp('dist')/'r'
    code, stdout, stderr = torchrun('train', '--out', out, '--root', mnist_root, '--epochs', '2', *QUICK)
    assert code == 0, stderr[-3000:]
    return out, stdout, stderr


def test_validation_columns_equal_one_process_on_the_same_weights(run2):
    out, _, _ = run2
    last = pd.read_csv(out/'metrics.csv').iloc[-1]  # the epoch whose weights are last.pt
    record = json.loads((out/'run.json').read_text())
    assert record['processes'] == 2
    x = _run_dls(record['args'], record['args']['root'], device='cpu').valid.x  # (150,1,28,28): every held-out image, one process
    assert len(x) == record['n_valid'] == 150
    model = load_checkpoint(out/'last.pt').eval()
    with torch.no_grad():
        mu, logvar = model.encode(x)  # (150,Z)
        std = (0.5*logvar).exp()
        # KL: no sampling, so the mean over all 150 images must match up to float rounding (sums in float32)
        kl = kl_divergence(Normal(mu, std), Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)  # (150,)
        assert abs(last['valid_kl'] - kl.mean().item()) < 1e-3, (last['valid_kl'], kl.mean().item())
        # halves: what each process alone would report; the test above must be able to tell them from the whole
        assert abs(kl[:76].mean() - kl.mean()) > 1e-2 and abs(kl[76:].mean() - kl.mean()) > 1e-2
        # reconstruction: one z per image in the run; here 64 draws per image give its expectation and the spread of
        # one draw's mean
        gen = torch.Generator().manual_seed(0)
        draws = torch.stack([Bernoulli(logits=model.decode(mu + std*torch.randn(mu.shape, generator=gen)),
                                       validate_args=False).log_prob(x).sum((1, 2, 3)).neg()
                             for _ in range(64)])  # (64,150)
        expected, se = draws.mean().item(), (draws.var(0).mean()/len(x)).sqrt().item()
    tol = 5*se + 1e-3  # five standard errors of a one-draw mean over 150 images
    assert abs(last['valid_recon'] - expected) < tol, (last['valid_recon'], expected, tol)
    assert abs(last['valid_loss'] - (last['valid_recon'] + last['valid_kl'])) < 1e-3


def test_files_written_once_by_the_main_process(run2):
    out, stdout, stderr = run2
    assert pd.read_csv(out/'metrics.csv')['epoch'].tolist() == [0, 1]  # one row per epoch, not one per process
    assert stdout.count('epoch 1/2:') == 1 and stdout.count('\nwrote ') == 1 and 'Traceback' not in stderr
    assert '2 processes' in stdout
    assert ({'best.pt', 'last.pt', 'last_state.pt', 'run.json', 'samples.png', 'reconstructions.png'}
            <= {p.name for p in out.iterdir()})
    assert not list(out.glob('*.part'))
    state = torch.load(out/'last_state.pt', weights_only=True)
    assert state['epoch'] == 1 and not any(k.startswith('module.') for k in state['model'])  # the model, not DDP's wrapper


def test_resume_a_two_process_run(run2, tmp_path):
    import shutil
    out = tmp_path/'r'; shutil.copytree(run2[0], out)
    before = pd.read_csv(out/'metrics.csv')
    record = json.loads((out/'run.json').read_text())
    code, stdout, stderr = torchrun('train', '--out', out, '--root', record['args']['root'], '--epochs', '3', '--resume', *QUICK)
    assert code == 0, stderr[-3000:]
    after = pd.read_csv(out/'metrics.csv')
    assert after['epoch'].tolist() == [0, 1, 2]
    pd.testing.assert_frame_equal(after.iloc[:2], before)  # the saved epochs are kept as they were
    assert stdout.count('epoch 3/3:') == 1 and 'epoch 1/3:' not in stdout
    resumes = json.loads((out/'run.json').read_text())['resumes']
    assert len(resumes) == 1 and resumes[0]['from_epoch'] == 2 and resumes[0]['processes'] == 2


def test_a_second_process_writes_nothing(tmp_path, monkeypatch):
    ("In-process, one process that calls itself rank 1 (fastai's RANK): its checkpoints, metrics and grids are "
     "the main process's to write.")
    monkeypatch.setenv('RANK', '1')
    set_seed(0)
    dls = get_dls('mnist', bs=64, subset=256)
    learn = vae_learner(dls, VAE(n_latent=4, n_hidden=32), checkpoint_dir=tmp_path/'ck', csv_path=tmp_path/'m.csv',
                        sample_dir=tmp_path/'s')
    learn.fit(1)
    assert not (tmp_path/'ck').exists() and not (tmp_path/'m.csv').exists() and not (tmp_path/'s').exists()
    monkeypatch.setenv('RANK', '0')
    learn.fit(1)
    assert (tmp_path/'ck'/'last.pt').exists() and (tmp_path/'m.csv').exists() and (tmp_path/'s'/'samples.png').exists()


def test_shards_cover_the_data():
    ("Validation shares: disjoint, together every image once, equal batch counts; "
     "training shares: strided over one shuffled order.")
    x = torch.arange(150.).view(150, 1, 1, 1)
    dls = dls_from_tensors(x/150, x/150, bs=32, device='cpu')
    for dl in dls.valid, dls.train:
        # each process has its own copy of the loader and its generator
        shards = [ShardedBatches(dl.new(), r, 2) for r in range(2)]
        assert len(shards[0]) == len(shards[1])
        seen = [torch.cat([xb for xb, _ in s]).flatten()*150 for s in shards]  # shards of the training loader draw the same order
        everything = torch.cat(seen).round().long()
        if dl is dls.valid: assert sorted(everything.tolist()) == list(range(150))
        else: assert set(everything.tolist()) == set(range(150)) and len(everything) == 150  # 150 is even: no padding


def test_the_two_shares_of_a_step_are_the_one_process_batch():
    ("Lesson 18's claim: with one seed, 2 processes with batches of 64 see, step by step, together the 128 images of "
     "the 1-process batch, epoch after epoch; so of the three things a seed fixes, only the draws of z differ.")
    from vae_course.data import TensorBatches
    x = torch.arange(300.).view(300, 1, 1, 1)  # image i is the number i; 300 = 2 x 128 + 44: a short last batch
    one = TensorBatches(x, bs=128, shuffle=True, seed=3)
    halves = [ShardedBatches(TensorBatches(x, bs=64, shuffle=True, seed=3), r, 2) for r in range(2)]
    for _ in range(2):  # a second epoch: all three draw their next order alike
        whole = [sorted(xb.flatten().long().tolist()) for xb, _ in one]
        shares = [[xb.flatten().long().tolist() for xb, _ in h] for h in halves]
        assert len(shares[0]) == len(shares[1]) == len(whole) == 3
        assert [sorted(a + b) for a, b in zip(*shares)] == whole
    other = TensorBatches(x, bs=128, shuffle=True, seed=4)  # another seed: other batches (the test can tell them apart)
    assert [sorted(xb.flatten().long().tolist()) for xb, _ in other] != whole
