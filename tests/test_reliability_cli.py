"""Issue 13, the command line: each test names its item. Real `vae-course` processes where a kill or a second process is
the point (SIGKILL, a lock held by another process); in-process calls of `main` elsewhere. A small MNIST folder (conftest)."""
import errno, json, os, signal, subprocess, sys, time
from pathlib import Path
from unittest import mock

import pytest, torch
from vae_course.cli import main

QUICK = ['--latent', '4', '--hidden', '32', '--bs', '64']


def cli(*argv, env=None, timeout=300):
    "Run the installed command in a fresh process: (exit code, stdout, stderr)."
    r = subprocess.run([sys.executable, '-m', 'vae_course.cli', *map(str, argv)], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    return r.returncode, r.stdout, r.stderr


def start(*argv):
    "Start the command in the background; its output goes to files beside nothing we read."
    return subprocess.Popen([sys.executable, '-m', 'vae_course.cli', *map(str, argv)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def wait_for(cond, timeout=120):
    end = time.time() + timeout
    while not cond():
        if time.time() > end: raise TimeoutError('the condition did not come true in time')
        time.sleep(0.2)


def epochs_in(csv):
    "The epochs of a metrics file's complete rows (the file may be half written while we look)."
    lines = Path(csv).read_text().splitlines()[1:] if Path(csv).exists() else []
    return [int(l.split(',')[0]) for l in lines if l.count(',') == 6]


def in_process(*argv, capsys=None):
    "Run `vae-course ARGV` in this process: the exit code (argparse's refusals, a config's rules among them, are 2 too)."
    try: code = main([str(a) for a in argv])
    except SystemExit as e: code = e.code
    return (code, *capsys.readouterr()) if capsys else code


# item 1: a run folder is one training at a time
def test_1_second_run_into_the_same_folder_is_refused(mnist_root, tmp_path):
    p = start('train', '--out', tmp_path/'r', '--root', mnist_root, '--epochs', '200', *QUICK)
    try:
        wait_for(lambda: (tmp_path/'r'/'run.json').exists())
        code, out, err = cli('train', '--out', tmp_path/'r', '--root', mnist_root, '--epochs', '2', *QUICK)
        assert code == 2 and 'in use by another vae-course process' in err and 'Traceback' not in err
        code, _, err = cli('train', '--out', tmp_path/'r', '--root', mnist_root, '--epochs', '300', '--resume', *QUICK)
        assert code == 2 and 'in use' in err
    finally: p.kill(); p.wait()
    assert len(set(epochs_in(tmp_path/'r'/'metrics.csv'))) == len(epochs_in(tmp_path/'r'/'metrics.csv'))


# item 2: killed mid-run (SIGKILL), then resumed: every epoch once, the state and the model of the same epoch, no debris
def test_2_kill_then_resume_keeps_every_epoch_once(mnist_root, tmp_path):
    run = tmp_path/'k'
    p = start('train', '--out', run, '--root', mnist_root, '--epochs', '6', *QUICK)
    wait_for(lambda: len(epochs_in(run/'metrics.csv')) >= 2)
    p.send_signal(signal.SIGKILL); p.wait()
    saved = torch.load(run/'last_state.pt', weights_only=True)['epoch']
    code, out, err = cli('train', '--out', run, '--root', mnist_root, '--epochs', '6', '--resume', *QUICK)
    assert code == 0, err
    assert epochs_in(run/'metrics.csv') == list(range(6)), (saved, epochs_in(run/'metrics.csv'))
    assert not list(run.glob('*.part'))
    record = json.loads((run/'run.json').read_text())
    assert record['resumes'][0]['from_epoch'] == saved + 1


# item 3: --resume keeps the original command and arguments, and records itself
def test_3_resume_keeps_the_original_record(mnist_root, tmp_path, capsys):
    run = tmp_path/'r'
    assert in_process('train', '--out', run, '--root', mnist_root, '--epochs', '1', *QUICK) == 0
    first = json.loads((run/'run.json').read_text())
    assert in_process('train', '--out', run, '--root', mnist_root, '--epochs', '2', '--resume', '--lr', '1e-4', *QUICK) == 0
    after = json.loads((run/'run.json').read_text())
    assert after['command'] == first['command'] and after['args'] == first['args']
    assert [r['from_epoch'] for r in after['resumes']] == [1] and '--lr 1e-4' in after['resumes'][0]['command']


# item 4: a failure before the first saved epoch never leaves a folder the user must clean by hand; inf and nan refused
def test_4_failed_start_can_be_started_again(mnist_root, tmp_path, capsys):
    run = tmp_path/'nan'
    code, out, err = in_process('train', '--out', run, '--root', mnist_root, '--epochs', '1', '--lr', '1e30', *QUICK,
                                capsys=capsys)
    assert code == 1 and not (run/'last_state.pt').exists()
    code, out, err = in_process('train', '--out', run, '--root', mnist_root, '--epochs', '1', '--resume', *QUICK, capsys=capsys)
    assert code == 2 and 'without --resume' in err
    code, out, err = in_process('train', '--out', run, '--root', mnist_root, '--epochs', '1', *QUICK, capsys=capsys)
    assert code == 0 and 'starting it again' in err
    for bad in (['--lr', 'inf'], ['--beta', 'nan'], ['--sigma', 'inf'], ['--free-bits', 'nan']):
        with pytest.raises(SystemExit) as e: main(['train', '--out', str(tmp_path/'x'), *bad])
        assert e.value.code == 2 and 'finite' in capsys.readouterr().err


# item 6: a resumed run uses the data it started on, or stops
def test_6_resume_uses_the_original_data(mnist_root, tmp_path, capsys, monkeypatch):
    run = tmp_path/'d'
    assert in_process('train', '--out', run, '--root', mnist_root, '--epochs', '1', *QUICK) == 0
    monkeypatch.setenv('VAE_COURSE_DATA', str(tmp_path/'elsewhere'))  # no --root: the recorded root is used, not this
    assert in_process('train', '--out', run, '--epochs', '2', '--resume', *QUICK) == 0
    other = tmp_path/'other'; other.mkdir(); (other/'MNIST').symlink_to(mnist_root/'MNIST')
    code, _, err = in_process('train', '--out', run, '--root', other, '--epochs', '3', '--resume', *QUICK, capsys=capsys)
    assert code == 2 and 'different model or data arguments' in err and '--root' in err


# item 11: an absurd K is refused at once
def test_11_huge_k_is_refused(mnist_root, tmp_path, capsys):
    assert in_process('train', '--out', tmp_path/'r', '--root', mnist_root, '--epochs', '1', *QUICK) == 0
    start_t = time.time()
    code, _, err = in_process('evaluate', tmp_path/'r', '--k', '1000000000000', capsys=capsys)
    assert code == 2 and 'importance samples per image' in err and time.time() - start_t < 5


# item 12: an empty --out, and a folder that cannot be written, fail before any work
def test_12_empty_out_and_unwritable_folder(mnist_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as e: main(['train', '--out', ''])
    assert e.value.code == 2 and 'folder name' in capsys.readouterr().err
    assert in_process('train', '--out', tmp_path/'r', '--root', mnist_root, '--epochs', '1', *QUICK) == 0
    capsys.readouterr()
    refuse = mock.patch('vae_course.cli.tempfile.TemporaryFile', side_effect=OSError(errno.EROFS, 'Read-only file system'))
    with refuse, mock.patch('vae_course.cli._evaluate') as work:
        code, _, err = in_process('evaluate', tmp_path/'r', capsys=capsys)
    assert code == 2 and 'cannot write into' in err and not work.called


# item 14: every error is one line and a non-zero exit; --debug shows the traceback
def test_14_errors_are_one_line(mnist_root, tmp_path):
    code, out, err = cli('train', '--out', tmp_path/'r', '--root', tmp_path/'no-data', '--epochs', '1')
    assert (code == 1 and len(err.strip().splitlines()) == 1 and err.startswith('vae-course train: error:')
            and 'Traceback' not in err)
    code, out, err = cli('train', '--debug', '--out', tmp_path/'r2', '--root', tmp_path/'no-data', '--epochs', '1')
    assert code == 1 and 'Traceback' in err
    (tmp_path/'j').mkdir(); (tmp_path/'j'/'run.json').write_text('{not json')
    code, out, err = cli('evaluate', tmp_path/'j')
    assert code == 1 and len(err.strip().splitlines()) == 1 and 'JSON' in err


def test_14_disk_full_is_one_line_and_loses_nothing(mnist_root, tmp_path, capsys):
    run = tmp_path/'full'
    assert in_process('train', '--out', run, '--root', mnist_root, '--epochs', '1', *QUICK) == 0
    before = (run/'last_state.pt').read_bytes()
    with mock.patch('torch.save', side_effect=OSError(errno.ENOSPC, 'No space left on device')):
        code, _, err = in_process('train', '--out', run, '--root', mnist_root, '--epochs', '2', '--resume', *QUICK, capsys=capsys)
    assert code == 1 and 'no space left' in err and len(err.strip().splitlines()) == 1
    assert (run/'last_state.pt').read_bytes() == before and not list(run.glob('*.part'))
    assert in_process('train', '--out', run, '--root', mnist_root, '--epochs', '2', '--resume', *QUICK) == 0


# item 16: warnings are plain lines, each once
def test_16_warnings_are_plain_lines_once(tmp_path):
    env = {'VAE_COURSE_DATA': '', 'VAE_COURSE_CACHE': str(tmp_path/'cache')}
    code, out, err = cli('train', '--out', tmp_path/'w', '--epochs', '1', '--subset', '200', *QUICK, env=env)
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 0, err
    assert all(l.startswith(('vae-course train: warning: ', 'downloading ')) for l in lines), lines
    assert not any('.py:' in l for l in lines) and len(lines) == len(set(lines))


# issue 10: in a log, one line per epoch instead of the progress bar
def test_log_gets_one_line_per_epoch(mnist_root, tmp_path):
    code, out, err = cli('train', '--out', tmp_path/'log', '--root', mnist_root, '--epochs', '3', *QUICK)
    assert code == 0, err
    assert [l.split(':')[0] for l in out.splitlines() if l.startswith('epoch ')] == ['epoch 1/3', 'epoch 2/3', 'epoch 3/3']
    assert '\r' not in out and len(out) < 4000


def test_train_tensorboard_logs_what_metrics_csv_holds(tmp_path, capsys):
    "`vae-course train --tensorboard` writes event files whose scalars are the metrics file's numbers."
    pytest.importorskip('tensorboard')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    import pandas as pd
    from vae_course.cli import main
    out = tmp_path/'tb'
    assert main(['train', '--out', str(out), '--subset', '300', '--epochs', '2', '--latent', '4', '--hidden', '16',
                 '--tensorboard']) == 0
    events = EventAccumulator(str(out/'tensorboard')).Reload()
    csv = pd.read_csv(out/'metrics.csv')
    for column in ('train_loss', 'valid_recon', 'valid_kl', 'valid_loss'):
        logged = [s.value for s in events.Scalars(column.replace('_', '/', 1))]
        assert logged == pytest.approx(csv[column].tolist(), rel=1e-5), column
    assert [i.step for i in events.Images('samples')] == [0, 1]


def test_logistic_likelihood_is_refused_before_any_work(tmp_path, capsys):
    "The command cannot yet train the discretized logistic (two outputs per pixel): one line says so, nothing is written."
    code, _, err = in_process('train', '--out', tmp_path/'r', '--likelihood', 'logistic', capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "lesson 12's notebook" in err, err
    assert not (tmp_path/'r').exists()
