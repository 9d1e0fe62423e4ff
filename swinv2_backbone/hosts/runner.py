"""Build an mmengine Runner for an mmdet or mmseg config, after checks that fail early and clearly.

``tools/train.py`` and ``tools/test.py`` are thin wrappers over :func:`build_runner`. Before the
Runner exists, :func:`preflight` checks what otherwise fails deep inside training: neck/head
channels against the backbone's declared ``out_channels``, dataset paths, and the backbone's
``init_cfg`` checkpoint.
"""
from __future__ import annotations

import argparse
import difflib
import gc
import importlib
import inspect
import logging
import os
import os.path as osp
import re
from pathlib import Path

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine._strategy import DDPStrategy, DeepSpeedStrategy, FSDPStrategy
from mmengine.logging import print_log
from mmengine.registry import STRATEGIES
from mmengine.runner import FlexibleRunner, Runner

__all__ = ['adapt_to_cpu', 'add_runner_args', 'build_model', 'build_runner', 'check_channels',
           'finish_distributed', 'host_of', 'load_config', 'load_model', 'meta_backbone',
           'preflight', 'require_host', 'strategy_to_cpu']

HOSTS = ('mmdet', 'mmseg', 'mmpretrain')


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    """The options tools/train.py and tools/test.py share."""
    parser.add_argument('--work-dir', help='default: work_dirs/<config name>')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        help='override config entries, e.g. train_cfg.max_iters=100')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0,
                        help=argparse.SUPPRESS)  # set by older launchers


# a base config of a host package ('mmdet::...'), and a local base config ('../x.py')
_HOST_BASE = re.compile(r"""['"](\w+)::""")
_LOCAL_BASE = re.compile(r"""['"]([^'":]+\.py)['"]""")


def hosts_named(path: str | os.PathLike) -> set[str]:
    """The packages whose base configs ``path`` or its local bases name (``'mmdet::...'``),
    read from the text: mmengine resolves them only when the package is installed."""
    hosts, todo, seen = set(), [Path(path).resolve()], set()
    while todo:
        file = todo.pop()
        if file in seen or not file.is_file():
            continue
        seen.add(file)
        text = file.read_text()
        hosts.update(_HOST_BASE.findall(text))
        todo.extend((file.parent / base).resolve() for base in _LOCAL_BASE.findall(text))
    return hosts


def load_config(path: str | os.PathLike, cfg_options: dict | None = None) -> Config:
    """``Config.fromfile`` after checking that the hosts whose base configs it inherits import
    (else an ImportError with the ``pip install`` line that fixes it)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f'config not found: {path}')
    for host in sorted(hosts_named(path) & set(HOSTS)):
        require_host(host)
    try:
        cfg = Config.fromfile(str(path))
    except ModuleNotFoundError as e:
        if e.name != 'pkg_resources':
            raise
        raise ImportError("mmengine finds 'mmdet::' and 'mmseg::' base configs through "
                          'pkg_resources, which setuptools >= 81 no longer has: pip install '
                          '"setuptools<81"') from e
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def host_of(cfg: Config) -> str:
    """'mmdet', 'mmseg' or 'mmpretrain' (SimMIM pretraining), from the config's
    ``default_scope`` (set by the hosts' bases)."""
    scope = cfg.get('default_scope')
    if scope not in HOSTS:
        raise ValueError(f'config default_scope is {scope!r}; expected one of {HOSTS} '
                         "(inherit an 'mmdet::', 'mmseg::' or 'mmpretrain::' base config)")
    return scope


def require_host(host: str) -> None:
    """Raise an ImportError saying what to install when ``host`` ('mmdet' or 'mmseg') does not
    import (not installed, or its mmcv missing or out of its range)."""
    try:
        importlib.import_module(host)
    except Exception as e:  # noqa: BLE001 - the hosts raise ImportError and AssertionError
        raise ImportError(f'this is an {host} config, but {host} does not import here '
                          f'({type(e).__name__}: {e}); install it with: pip install '
                          f'"swinv2_backbone[{host}]" (mmcv >= 2.0, < 2.2 with its compiled ops)'
                          ) from e


def meta_backbone(backbone: dict):
    """The ``SwinV2Backbone`` of a config's backbone dict on the meta device (its contract
    without any weights); an argument it does not take is named with the closest one."""
    from ..model.backbone import SwinV2Backbone
    kwargs = {k: v for k, v in backbone.items() if k not in ('type', 'init_cfg', '_delete_')}
    accepted = inspect.signature(SwinV2Backbone).parameters
    for key in kwargs:
        if key not in accepted:  # a typo: name it and the argument meant
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ''
            raise ValueError(f"model.backbone: SwinV2Backbone has no argument '{key}'{hint}")
    with torch.device('meta'):  # the contract without allocating any weights
        return SwinV2Backbone(**kwargs)


def _backbone_channels(backbone: dict) -> tuple[int, ...]:
    return meta_backbone(backbone).out_channels


def check_channels(cfg: Config) -> None:
    """Neck / head ``in_channels`` must equal the SwinV2 backbone's ``out_channels``: the neck's,
    or without a neck the heads that take the backbone's maps (mmseg's decode and auxiliary
    heads, mmdet's Mask2Former ``panoptic_head``)."""
    model = cfg.model
    backbone = model.get('backbone', {})
    if backbone.get('type') != 'SwinV2Backbone':
        return
    channels = list(_backbone_channels(backbone))
    consumers = []
    if isinstance(model.get('neck'), dict) and 'in_channels' in model.neck:
        consumers.append(('model.neck', model.neck))
    for head in ('decode_head', 'auxiliary_head', 'panoptic_head'):
        heads = model.get(head)
        for i, h in enumerate(heads if isinstance(heads, list) else [heads]):
            if isinstance(h, dict) and 'in_channels' in h and 'neck' not in model:
                consumers.append((f'model.{head}' + (f'[{i}]' if isinstance(heads, list) else ''),
                                  h))
    for name, part in consumers:
        got = part['in_channels']
        index = part.get('in_index', list(range(len(channels))) if isinstance(got, list) else -1)
        if isinstance(index, (list, tuple)):
            if any(not -len(channels) <= i < len(channels) for i in index):
                raise ValueError(f'{name}.in_index {index} is out of range for the backbone\'s '
                                 f'{len(channels)} outputs')
            want = [channels[i] for i in index]
            got = list(got)
        else:
            want = channels[index]
        if got != want:
            raise ValueError(f"{name}.in_channels is {got} but the SwinV2 backbone "
                             f"(arch={backbone.get('arch', 'tiny')!r}, out_indices/out_features "
                             f'as configured) gives {want}: set {name}.in_channels={want}')


def _dataset_paths(dataset: dict) -> list[tuple[str, str]]:
    """(what, path) pairs a dataset config reads, wrappers unwrapped."""
    if dataset is None:
        return []
    if 'dataset' in dataset:
        return _dataset_paths(dataset['dataset'])
    if 'datasets' in dataset:
        return [p for d in dataset['datasets'] for p in _dataset_paths(d)]
    root = dataset.get('data_root', '') or ''
    paths = []
    if root:
        paths.append(('data_root', root))
    if dataset.get('ann_file'):
        paths.append(('ann_file', osp.join(root, dataset['ann_file'])))
    prefixes = dataset.get('data_prefix') or {}
    if isinstance(prefixes, str):  # mmpretrain's CustomDataset takes one folder
        prefixes = {'img_path': prefixes}
    for key, prefix in prefixes.items():
        if prefix:
            paths.append((f'data_prefix.{key}', osp.join(root, prefix)))
    return paths


def _check_paths(cfg: Config, mode: str) -> None:
    loaders = ('train_dataloader', 'val_dataloader') if mode == 'train' else ('test_dataloader',)
    for loader in loaders:
        if cfg.get(loader) is None or (loader == 'val_dataloader' and not cfg.get('val_cfg')):
            continue
        for what, path in _dataset_paths(cfg[loader].get('dataset')):
            if '://' not in path and not osp.exists(path):
                raise FileNotFoundError(f'{loader}.dataset.{what} does not exist: {path}')
    backbone = cfg.model.get('backbone', {})
    init = backbone.get('init_cfg') or {}
    ckpt = init.get('checkpoint') if isinstance(init, dict) else None
    # testing loads the trained checkpoint and never initialises from the pretrained one
    if mode == 'train' and ckpt and '://' not in str(ckpt) and not osp.exists(ckpt):
        raise FileNotFoundError(f'model.backbone.init_cfg.checkpoint does not exist: {ckpt} '
                                '(download the weights the config header names, or set '
                                'init_cfg=None to train from scratch)')
    load_from = cfg.get('load_from')
    if load_from and '://' not in str(load_from) and not osp.exists(load_from):
        raise FileNotFoundError(f'load_from checkpoint does not exist: {load_from}')


# the strategies that shard the model over processes (subclasses included)
SHARDING = (FSDPStrategy, DeepSpeedStrategy)


def strategy_class(strategy: dict | None) -> type | None:
    """The class a FlexibleRunner's ``strategy`` config builds: its ``type``, a registered name
    or a class; None without one, or for a name nobody registered (mmengine's build says so)."""
    kind = (strategy or {}).get('type')
    return kind if isinstance(kind, type) else STRATEGIES.get(kind) if kind else None


def _check_runner(cfg: Config, launcher: str) -> None:
    """A sharding strategy needs processes started by a launcher (its wrapper reads the local
    rank); mmengine would fail with a KeyError inside the wrapper."""
    runner_type = cfg.get('runner_type', 'Runner')
    if runner_type not in ('Runner', 'FlexibleRunner'):
        raise ValueError(f"runner_type is {runner_type!r}; expected 'Runner' or "
                         "'FlexibleRunner'")
    strategy = strategy_class(cfg.get('strategy')) if runner_type == 'FlexibleRunner' else None
    if strategy is not None and issubclass(strategy, SHARDING) and launcher == 'none':
        raise ValueError(f'strategy {strategy.__name__} shards the model over processes: start '
                         'them with tools/dist_train.sh CONFIG NPROC (torchrun; --launcher '
                         'pytorch), one per GPU')


def _unshard_for_one_process(cfg: Config) -> None:
    """Evaluating in one process needs no sharding: a FlexibleRunner config runs in mmengine's
    Runner, which loads the whole checkpoint an FSDP run saves with state_dict_cfg='full'. One
    shard per rank ('local': a folder) loads only into as many processes."""
    load_from = cfg.get('load_from')
    if load_from and osp.isdir(load_from):
        raise ValueError(f'{load_from} is a folder of per-rank shards (state_dict_cfg=\'local\'): '
                         'evaluate it with tools/dist_test.sh CONFIG CHECKPOINT NPROC and the '
                         'number of processes that saved it')
    cfg.pop('runner_type')
    cfg.pop('strategy', None)
    print_log('evaluating in one process: the FlexibleRunner config runs in the Runner, '
              'unsharded', logger='current')


def preflight(cfg: Config, mode: str = 'train') -> None:
    """Raise a clear error for what would otherwise fail inside the Runner."""
    require_host(host_of(cfg))
    check_channels(cfg)
    _check_paths(cfg, mode)


def _replace_syncbn(node) -> int:
    """SyncBN -> BN in place (SyncBN cannot run on CPU); returns how many were replaced."""
    count = 0
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += _replace_syncbn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += _replace_syncbn(value)
    return count


def adapt_to_cpu(cfg: Config, launcher: str = 'none') -> None:
    """Without a GPU: SyncBN runs as BN, and distributed runs use gloo and CPU DDP."""
    if torch.cuda.is_available():
        return
    replaced = _replace_syncbn(cfg._cfg_dict)
    if replaced:
        print_log(f'no GPU: {replaced} SyncBN layers run as BN', logger='current')
    if launcher != 'none':
        _init_cpu_distributed(launcher)
        cfg.env_cfg = ConfigDict(cfg.get('env_cfg', {}))
        cfg.env_cfg.dist_cfg = dict(backend='gloo')
        if cfg.get('runner_type') != 'FlexibleRunner':
            cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None,
                                         broadcast_buffers=False)
            return
        strategy_to_cpu(cfg.setdefault('strategy', ConfigDict(type='DDPStrategy')))


def strategy_to_cpu(strategy: ConfigDict) -> None:
    """A FlexibleRunner strategy's wrapper on CPU processes: the DDP and FSDP strategies pass
    the local rank as a CUDA device, which the config's value overrides; others (DeepSpeed
    picks its own accelerator) are left as they are."""
    wrapper = strategy.get('model_wrapper') or ConfigDict()
    kind = strategy_class(strategy)
    if kind is None:
        return
    if issubclass(kind, FSDPStrategy):  # an FSDPStrategy is a DDPStrategy: this first
        wrapper.device_id = 'cpu'
    elif issubclass(kind, DDPStrategy):
        wrapper.setdefault('broadcast_buffers', False)
        wrapper.device_ids = None
    else:
        return
    strategy.model_wrapper = wrapper


def build_model(cfg: Config) -> torch.nn.Module:
    """The config's whole model, built by its host's registry as :func:`adapt_to_cpu` adapts
    it, without the backbone's pretrained weights (``init_cfg`` dropped): for tools that load
    a checkpoint of the whole model, or need none (counting)."""
    from mmengine.registry import init_default_scope
    host = host_of(cfg)
    backbone = cfg.model.get('backbone', {})
    if backbone.get('init_cfg') is not None:
        backbone.init_cfg = None
    adapt_to_cpu(cfg)
    init_default_scope(host)
    return importlib.import_module(f'{host}.registry').MODELS.build(cfg.model)


def load_model(config: str | os.PathLike, checkpoint: str | os.PathLike | None,
               device: str = 'cpu', cfg_options: dict | None = None):
    """An mmdet or mmseg config's model with the checkpoint's weights, in eval mode on
    ``device``; its host ('mmdet' or 'mmseg') and class names (the checkpoint's
    ``dataset_meta``, else the config's test dataset's ``metainfo``, else None)."""
    from mmengine.runner import load_checkpoint
    cfg = load_config(config, cfg_options)
    host = host_of(cfg)
    if host not in ('mmdet', 'mmseg'):
        raise ValueError(f'{config} is an {host} config; expected an mmdet or mmseg one')
    model = build_model(cfg)
    classes = None
    if checkpoint is not None:
        if Path(checkpoint).suffix.lower() in ('.onnx', '.xml', '.engine'):
            raise ValueError(f'{checkpoint} is an exported model; give the PyTorch checkpoint '
                             '(.pth) it was exported from')
        meta = load_checkpoint(model, str(checkpoint), map_location='cpu').get('meta', {})
        classes = (meta.get('dataset_meta') or {}).get('classes')
    if classes is None:
        metainfo = cfg.get('test_dataloader', {}).get('dataset', {}).get('metainfo') or {}
        classes = metainfo.get('classes')
    return model.to(device).eval(), host, list(classes) if classes else None


def _init_cpu_distributed(launcher: str) -> None:
    """Start gloo ourselves: mmengine's own init calls torch.cuda.set_device."""
    import torch.distributed as dist
    if launcher != 'pytorch':
        raise ValueError(f'launcher {launcher!r} needs a GPU; on CPU use --launcher pytorch '
                         '(tools/dist_train.sh)')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')


def finish_distributed() -> None:
    """Leave the process group, if any, once every rank is done. A process that exits with its
    group alive can be aborted at exit by the group's own threads (SIGABRT, "terminate called
    without an active exception", seen with gloo on torch 2.1 and 2.14) after its work is done,
    and the launcher then reports the run as failed.

    A DDP-wrapped model holds the group too (its reducer), so destroying the group while one
    lives only unregisters it, and the group dies with the model at interpreter exit, where its
    threads abort as above. Callers drop their runner first (``del runner``); the collection
    here frees it, reference cycles and all."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def build_runner(config: str | os.PathLike | Config, mode: str = 'train',
                 work_dir: str | None = None, resume: str | bool | None = None,
                 checkpoint: str | None = None, amp: bool = False,
                 cfg_options: dict | None = None, launcher: str = 'none') -> Runner:
    """A Runner for ``config`` ready to ``train()`` or ``test()``.

    Args:
        mode: 'train' or 'test' (decides which datasets must exist).
        work_dir: default ``work_dirs/<config name>``.
        resume: True to resume from the latest checkpoint in ``work_dir``, or a path.
        checkpoint: weights to test (``load_from``).
        amp: mixed precision (``AmpOptimWrapper``; needs a GPU).
        launcher: 'none' or 'pytorch' (torchrun); on CPU the gloo backend is used.
    """
    cfg = config if isinstance(config, Config) else load_config(config, cfg_options)
    if isinstance(config, Config) and cfg_options:
        cfg.merge_from_dict(cfg_options)
    name = Path(cfg.filename).stem if cfg.filename else 'config'
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join('work_dirs', name)
    cfg.launcher = launcher
    if checkpoint:
        cfg.load_from = checkpoint
    if resume:
        cfg.resume = True
        if isinstance(resume, str):
            cfg.load_from = resume
    if amp:
        if not torch.cuda.is_available():
            raise ValueError('--amp needs a GPU: mmengine\'s AmpOptimWrapper does not run on '
                             'CPU')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if mode == 'test' and launcher == 'none' and cfg.get('runner_type') == 'FlexibleRunner':
        _unshard_for_one_process(cfg)
    _check_runner(cfg, launcher)  # before adapt_to_cpu starts a process group
    adapt_to_cpu(cfg, launcher)
    preflight(cfg, mode)
    # the hosts register their modules when their default scope is first used
    runner = (SwinV2FlexibleRunner if cfg.get('runner_type') == 'FlexibleRunner'
              else SwinV2Runner).from_cfg(cfg)
    runner.logger.addFilter(QuietParamwiseOptions(runner.logger))
    files = [h.baseFilename for h in runner.logger.handlers if isinstance(h, logging.FileHandler)]
    if files:
        runner.logger.info(f'the environment, the whole config and the hook order: {files[0]}')
    return runner


class FileOnlyStartup(logging.Filter):
    """On the console handler: what the Runner logs as it starts (the environment, the whole
    config, the hook order: hundreds of lines) goes to the log file only."""
    STARTUP = ('Config:\n', 'Hooks will be executed', '\n' + '-' * 60 + '\nSystem environment:')

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(self.STARTUP))


def _file_only_startup(logger: logging.Logger) -> None:
    for handler in logger.handlers:
        if type(handler) is logging.StreamHandler and not any(
                isinstance(f, FileOnlyStartup) for f in handler.filters):
            handler.addFilter(FileOnlyStartup())


class SwinV2Runner(Runner):
    """mmengine's Runner, its start-up logs in the log file only (:class:`FileOnlyStartup`);
    the first thing it logs is the environment, so the console filter goes on there."""

    def _log_env(self, env_cfg: dict) -> None:
        _file_only_startup(self.logger)
        super()._log_env(env_cfg)


class SwinV2FlexibleRunner(FlexibleRunner):
    """mmengine's FlexibleRunner, its start-up logs in the log file only."""

    def _log_env(self) -> None:
        _file_only_startup(self.logger)
        super()._log_env()


class QuietParamwiseOptions(logging.Filter):
    """mmengine's optimizer constructor logs one line per parameter and option (hundreds for a
    detector): kept only when the runner's ``log_level`` is 'DEBUG'."""

    def __init__(self, logger: logging.Logger):
        super().__init__()
        self.logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith('paramwise_options -- '):
            # MMLogger puts log_level on its handlers, the logger itself stays NOTSET
            return any(h.level <= logging.DEBUG for h in self.logger.handlers)
        return True
