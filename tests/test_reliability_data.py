"""Issue 13, the model side: each test names its item. The data side (IDX files, checksums, named folders, downloads,
the offline fallback, get_dls' checks) is tested beside its code, in nbs/91_files.ipynb and nbs/00_data.ipynb."""
import json
from unittest import mock

import pytest, torch

from vae_course.model import VAE, ConvVAE, CheckpointError, MODELS, load_checkpoint, save_checkpoint


# item 9: NaN and inf are refused at the public edges; forward reads no values
@pytest.mark.parametrize('cls', [VAE, ConvVAE])
def test_9_model_public_methods_refuse_bad_values(cls):
    model, x = cls(4, 32), torch.rand(3, 1, 28, 28)
    nan_x = x.clone(); nan_x[0, 0, 0, 0] = float('nan')
    for f in (model.encode, model.reconstruct, model.trace):
        with pytest.raises(ValueError, match='expected finite values'): f(nan_x)
        with pytest.raises(ValueError, match='infinite'): f(x + float('inf'))
        with pytest.raises(ValueError, match=r'expected values in \[0,1\]'): f(x*255)
    z = torch.randn(2, 4); z[1, 1] = float('nan')
    with pytest.raises(ValueError, match='latent codes: expected finite values'): model.decode(z)
    with pytest.raises(ValueError, match='latent codes: expected finite values'): model.decode(torch.full((2, 4), float('inf')))
    assert model(nan_x).logits.shape == (3, 1, 28, 28)  # forward: shape and dtype only, no read of the values


def test_9_per_batch_path_reads_no_values():
    "forward and sample never call the value checks (each would make the CPU wait for the GPU)."
    import vae_course.model as m
    model = VAE(4, 32)
    with mock.patch.object(m, 'check_finite', side_effect=AssertionError('read values')), \
         mock.patch.object(m, 'check_images', side_effect=AssertionError('read values')):
        model(torch.rand(2, 1, 28, 28)); model.sample(3)


# item 10: sizes and counts; dtypes converted at the public edge
@pytest.mark.parametrize('kwargs', [dict(n_latent=0), dict(n_latent=-1), dict(n_hidden=0), dict(n_hidden=-4), dict(n_latent=1.5)])
def test_10_model_sizes(kwargs):
    for cls in (VAE, ConvVAE):
        with pytest.raises(ValueError, match=f'{next(iter(kwargs))} must be a positive whole number'): cls(**kwargs)


def test_10_float64_and_float16_are_converted():
    model, x = VAE(4, 32), torch.rand(3, 1, 28, 28)
    for dt in (torch.float64, torch.float16, torch.bfloat16):
        assert model.encode(x.to(dt))[0].dtype == torch.float32
        assert model.reconstruct(x.to(dt)).dtype == torch.float32
    assert model.decode(torch.randn(2, 4, dtype=torch.float64)).dtype == torch.float32
    torch.testing.assert_close(model.encode(x.double())[0], model.encode(x)[0])


# item 11: a JSON that asks for a huge model is refused before anything is allocated
def test_11_huge_config_refused_on_meta(tmp_path):
    save_checkpoint(VAE(4, 16), tmp_path/'m.pt')
    (tmp_path/'m.json').write_text(json.dumps({'model': 'VAE', 'config': {'n_latent': 4, 'n_hidden': 300_000}}))
    built_on = []
    class Spy(VAE):
        def __init__(self, *args, **kwargs): built_on.append(torch.empty(0).device.type); super().__init__(*args, **kwargs)
    with mock.patch.dict(MODELS, {'VAE': Spy}):
        with pytest.raises(CheckpointError, match=r'\(300000, 784\) in the model'): load_checkpoint(tmp_path/'m.pt', device='cpu')
    assert built_on == ['meta']
    (tmp_path/'m.json').write_text(json.dumps({'model': 'VAE', 'config': {'n_latent': 0, 'n_hidden': 16}}))
    with pytest.raises(CheckpointError, match='n_latent must be a positive whole number'):
        load_checkpoint(tmp_path/'m.pt', device='cpu')
