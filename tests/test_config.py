"""The config layer (`vae_course.config`, notebook 92): every setting documented, `vae-course`'s parser derived from it
(and the command lines of the parser it replaced still read as they were), the rules between settings, and no default
stated twice (tools/check_settings.py)."""
import argparse, json, subprocess, sys
from dataclasses import fields
from pathlib import Path
import pytest
from fastcore.docments import docments
import vae_course.config as config
from vae_course.config import (ConfigError, DataConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig, add_arguments,
                               field_docs, from_args, model_class, to_argv)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/'tools'))
from check_settings import module_defaults, report, restated_defaults, setting_names  # noqa: E402

GROUPS = (DataConfig, ModelConfig, TrainConfig, EvalConfig)
COMMAND_ONLY = {'help', 'out', 'resume', 'debug', 'run_dir', 'seeds'}  # the commands' own arguments, not settings
FIELDS = {f.name: f for cls in (RunConfig, EvalConfig) for f in fields(cls)}

def cli_parser(command:str)->argparse.ArgumentParser:
    "The sub-command's parser of `vae-course` (lesson 18's `build_parser`)."
    from vae_course.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]

def derived(command:str)->tuple:
    "The parser derived from the config for `command`, and its config class."
    if command == 'train': return add_arguments(argparse.ArgumentParser(prog='vae-course train'), RunConfig), RunConfig
    p = add_arguments(argparse.ArgumentParser(prog='vae-course evaluate'), EvalConfig)
    return add_arguments(p, DataConfig, names=('root', 'eval_seed'), aliases={'eval_seed': ('--seed',)}), EvalConfig

def by_option(p:argparse.ArgumentParser)->dict: return {s: a for a in p._actions for s in a.option_strings}

def test_every_setting_has_help_text():
    for cls in (*GROUPS, RunConfig):
        assert [n for n, doc in field_docs(cls).items() if not doc] == [], cls.__name__
    for command in ('train', 'evaluate'):
        assert all(a.help for a in derived(command)[0]._actions), command

def test_the_docs_are_what_fastcore_docments_reads():
    for cls in GROUPS:
        ours, fastcore = field_docs(cls), docments(cls)
        assert {n: ' '.join(fastcore[n].split()) for n in ours} == ours, cls.__name__

def test_no_setting_is_named_twice():
    names = [f.name for cls in (DataConfig, ModelConfig, TrainConfig) for f in fields(cls)]
    assert len(names) == len(set(names)) == len(fields(RunConfig))
    assert [f.name for f in fields(RunConfig)] == names  # data, model, training: the order of --help

def _spelled(a)->tuple:
    "What a user sees of an option: its strings, default, choices, arity, type, help, and whether it takes a value."
    return (a.option_strings, a.default, a.choices, a.nargs, getattr(a.type, '__name__', a.type), a.help, a.const,
            type(a).__name__)

@pytest.mark.parametrize('command', ['train', 'evaluate'])
def test_the_cli_parser_is_the_derived_one(command):
    "Each setting's option of `vae-course` is `add_arguments`'s, spelled the same; the others are the commands' own."
    cli, ours = by_option(cli_parser(command)), by_option(derived(command)[0])
    for opt, b in ours.items():
        if b.dest == 'help': continue
        assert opt in cli, f"{command}: {opt} is missing from vae-course's parser"
        assert _spelled(cli[opt]) == _spelled(b), f"{command} {opt}: {_spelled(cli[opt])} vs {_spelled(b)}"
    assert {a.dest for a in cli.values()} - {b.dest for b in ours.values()} <= COMMAND_ONLY

# command lines of the parser that `vae-course` had before the config (lesson 12's), and what they meant
TRAIN_ARGV = [([], RunConfig()),
              (('--model conv --latent 8 --hidden 512 --binarize dynamic --iw-k 5 --epochs 3 --valid test --bs 64 '
                '--lr 3e-4 --schedule one-cycle --seed 7 --subset 600 --precision fp32 --likelihood gaussian '
                '--sigma 0.2').split(),
               RunConfig(arch='conv', n_latent=8, n_hidden=512, binarize='dynamic', iw_k=5, epochs=3, valid='test', bs=64,
                         lr=3e-4, schedule='one-cycle', seed=7, subset=600, precision='fp32', likelihood='gaussian',
                         sigma=0.2)),
              (('--hidden 200 200 --beta 0.5 --kl-warmup 100 --free-bits 0.1 --dataset fashion_mnist --root data '
                '--binarize none').split(),
               RunConfig(n_hidden=(200, 200), beta=0.5, kl_warmup=100, free_bits=0.1, dataset='fashion_mnist',
                         root=Path('data'))),
              ('--images photos --size 64 --likelihood gaussian'.split(),
               RunConfig(images=Path('photos'), size=64, likelihood='gaussian'))]

@pytest.mark.parametrize('argv,meant', TRAIN_ARGV)
def test_old_command_lines_still_parse(argv, meant):
    cfg = from_args(RunConfig, cli_parser('train').parse_args(['--out', 'run', *argv]))
    assert cfg == meant.check()
    assert from_args(RunConfig, derived('train')[0].parse_args(to_argv(cfg))) == cfg   # and writes them back
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # through run.json

def test_old_evaluate_command_lines_still_parse():
    argv = '--k 5000 --iw-images all --checkpoint last --samples 100 --extractor inception --seed 3 --root data'.split()
    ns = cli_parser('evaluate').parse_args(['run', *argv])
    assert from_args(EvalConfig, ns) == EvalConfig(k=5000, iw_images=None, checkpoint='last', samples=100,
                                                   extractor='inception')
    assert from_args(DataConfig, ns) == DataConfig(eval_seed=3, root=Path('data')).check()

RULES = [  # (command, argv, the message with its settings named as options): today's UsageErrors and ranges, once
    ('train', '--images p --dataset mnist', '--images and --dataset mnist are two sources of data: give one'),
    ('train', '--size 64', '--size is for --images: it needs a folder of images'),
    ('train', '--images p --valid test', '--valid test needs a test split, and a folder of images has none: '
                                         'its validation images are held out from it (--valid holdout)'),
    ('train', '--images p --binarize static', '--binarize static is a protocol for MNIST-like digits; your images '
                                              'train on their pixels in [0,1] (--likelihood gaussian suits colour)'),
    ('train', '--images p --root d', '--root is the folder of the MNIST files; with --images there is nothing to read'),
    ('train', '--model conv --hidden 200 200', '--n-hidden takes one number for --arch conv, got 2'),
    ('train', '--iw-k 5 --beta 2', '--iw-k 5 trains on the IWAE bound, which has no KL term to weigh: '
                                   'leave --beta, --free-bits and --kl-warmup at their defaults'),
    ('train', '--iw-k 5 --kl-warmup 10', '--iw-k 5 trains on the IWAE bound'),
    ('train', '--latent 0', '--n-latent must be a positive whole number, got 0'),
    ('train', '--epochs 0', '--epochs must be a positive whole number, got 0'),
    ('train', '--lr inf', '--lr must be a finite number > 0, got inf'),
    ('train', '--sigma 0', '--sigma must be a finite number > 0, got 0.0'),
    ('train', '--beta -1', '--beta must be a finite number >= 0, got -1.0'),
    ('train', '--free-bits nan', '--free-bits must be a finite number >= 0, got nan'),
    ('train', '--kl-warmup -3', '--kl-warmup must be a whole number >= 0, got -3'),
    ('train', f'--seed {2**63}', '--seed must be a whole number from 0 to 2**63 - 1, got 9223372036854775808'),
    ('train', '--seed -1', '--seed must be a whole number from 0 to 2**63 - 1, got -1'),
    ('train', '--holdout 1.5', '--holdout must be a fraction between 0 and 1, got 1.5'),
    ('train', '--n-components 5', '--n-components counts the components of a mixture prior: it needs --prior mog'),
    ('train', '--codebook-size 512', "--codebook-size is the VQ-VAE's: it needs --arch vqvae, not mlp"),
    ('train', '--model conv --prior mog', "--prior mog and --stochastic-layers 1 are MLP models' (lessons 16, 17)"),
    ('train', '--stochastic-layers 2 --prior vamp', '--stochastic-layers 2 has the prior N(0,I) on its top layer'),
    ('train', '--arch vqvae --latent 8', "the VQ-VAE's latent is a grid of codes"),
    ('train', '--arch vqvae --conditional', "--conditional is lesson 13's CVAE"),
    ('train', '--conditional --prior mog', "--conditional is lesson 13's CVAE"),
    ('train', '--tcvae --arch conv', "--tcvae is lesson 14's MLP beta-TCVAE: it needs --arch mlp, not conv"),
    ('train', '--tcvae --prior vamp', '--tcvae has the prior N(0,I) and one stochastic layer'),
    ('train', '--arch vqvae --iw-k 4', '--iw-k 4: the VQ-VAE trains on its own objective, not the IWAE bound'),
    ('train', '--tcvae --iw-k 4', '--iw-k 4: the beta-TCVAE trains on its own objective'),
    ('train', '--arch vqvae --beta 2 --free-bits 1', "the VQ-VAE's loss has no KL term to weigh: leave out --beta, --free-bits"),
    ('evaluate', '--k 10000000', '--k 10,000,000 is more than 100,000 importance samples per image: '
                                 'the standard protocol uses 5,000'),
    ('evaluate', '--iw-images 0', '--iw-images must be a positive whole number, got 0'),
]

@pytest.mark.parametrize('command,argv,message', RULES)
def test_each_rule_is_one_line_that_names_the_option(command, argv, message, capsys, tmp_path):
    p, cls = derived(command)
    with pytest.raises(ConfigError) as e: from_args(cls, p.parse_args(argv.split()))
    assert message in e.value.options() and '\n' not in str(e.value)
    with pytest.raises(SystemExit) as stop: from_args(cls, p.parse_args(argv.split()), p)  # usage, exit code 2
    assert stop.value.code == 2 and message in capsys.readouterr().err
    from vae_course.cli import main  # and so does `vae-course`, before any work
    head = ['train', '--out', str(tmp_path/'never')] if command == 'train' else ['evaluate', str(tmp_path)]
    with pytest.raises(SystemExit) as stop: main([*head, *argv.split()])
    assert stop.value.code == 2 and message in capsys.readouterr().err and not (tmp_path/'never').exists()

@pytest.mark.parametrize('argv,message', [
    (['--latent', 'two'], "argument --n-latent/--latent: expected a whole number, got 'two'"),
    (['--lr', 'fast'], "argument --lr: expected a number, got 'fast'"),
    (['--iw-images', 'most'], "expected a whole number or all, got 'most'"),
    (['--images', ' '], 'argument --images: expected a folder name, got an empty one'),
    (['--binarize', 'yes'], "argument --binarize: invalid choice: 'yes'")])
def test_options_that_do_not_parse_stop_argparse(argv, message, capsys):
    p = derived('evaluate' if argv[0] == '--iw-images' else 'train')[0]
    with pytest.raises(SystemExit): p.parse_args(argv)
    assert message in capsys.readouterr().err

def test_the_config_states_what_the_lessons_use():
    "The config's choices and constants are those of the lessons that still hold a copy (until they import them)."
    from vae_course import cli, data, fid, losses
    assert config.DATASET_NAMES == tuple(sorted(data.DATASETS))
    assert config.BINARIZE == tuple(data.BINARIZE)
    assert set(losses.LIKELIHOODS) <= set(config.LIKELIHOOD_NAMES)
    assert config.EXTRACTORS == tuple(fid.EXTRACTORS)
    assert not any(hasattr(cli, n) for n in ('MAX_K', 'HOLDOUT', 'MODEL_CLASSES', 'MODEL_ARGS'))  # the config's alone
    from vae_course.conditional import CVAE
    from vae_course.disentangle import TCVAE
    from vae_course.vqvae import VQVAE
    built = [type(cli._model(RunConfig(**kw).check(), {'image_shape': (1, 28, 28)})) for kw in
             ({}, {'arch': 'conv'}, {'arch': 'vqvae'}, {'conditional': True}, {'tcvae': True})]
    assert built == [model_class('mlp'), model_class('conv'), VQVAE, CVAE, TCVAE]

def test_config_imports_no_lesson():
    "An appendix module: importing it imports no lesson module (the model classes are imported by name, when asked)."
    out = subprocess.run([sys.executable, '-c', "import sys, vae_course.config; "
                          "print(sorted(m for m in sys.modules if m.startswith('vae_course.')))"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['vae_course.config', 'vae_course.core']"

def test_unknown_keys_are_refused():
    with pytest.raises(ConfigError, match="RunConfig has no setting 'latent': did you mean `n_latent`?"):
        RunConfig.from_dict({'latent': 8})
    with pytest.raises(ConfigError, match="EvalConfig has no setting 'bs'"): EvalConfig.from_dict({'bs': 8})

def test_the_settings_checker_finds_what_it_should(tmp_path):
    src = tmp_path/'mod.py'
    src.write_text("from vae_course.config import DataConfig\n"
                   "def a(x, bs:int=128, seed=None, *, lr=1e-3, holdout=1/6): pass\n"  # four written defaults
                   "def b(bs:int=DataConfig.bs, n_hidden=400, other=3): pass\n"  # none: config, model's, no setting
                   "class C:\n    def f(self, k=-1): pass\n"
                   "def p(parser): parser.add_argument('--bs', type=int, default=128, choices=[1, 2])\n")
    found = module_defaults(src, setting_names())
    assert [(r['where'], r['what']) for r in found] == [
        ('a', 'bs=128'), ('a', 'seed=None'), ('a', 'lr=0.001'), ('a', 'holdout=1 / 6'), ('C.f', 'k=-1'),
        ('argparse --bs', 'default=128'), ('argparse --bs', 'choices=[1, 2]')]
    assert 'mod.py: 7' in report(found)

@pytest.mark.xfail(strict=False, reason="issue 19: the library's modules still write defaults of settings; their "
                                        "owners refer them to vae_course.config (the list: tools/check_settings.py)")
def test_no_default_is_written_twice():
    found = restated_defaults()
    print(report(found))
    if found: pytest.xfail(f"{len(found)} defaults of settings written outside the config (tools/check_settings.py)")
