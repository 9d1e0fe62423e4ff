"""Checkpoints named by URL, as OpenMMLab configs name them: downloaded once, verified, cached;
and HF hub repositories (``hf://owner/name``) through ``huggingface_hub``.

:func:`fetch` gives a local file for an ``http(s)://`` URL. The cache is the one torch.hub and
mmengine's ``load_from_http`` use (``$TORCH_HOME/hub/checkpoints``, by default
``~/.cache/torch/hub/checkpoints``), under the URL's file name, so a file one of them fetched
is not fetched again. A download goes to a temporary name in the cache and is renamed when
complete; a file name with a hash suffix (``name-<sha256 prefix>.pth``, torch.hub's convention)
is checked against the SHA-256 of what arrived (:func:`~swinv2_backbone.files.atomic_write`:
the file gets the mode the umask gives). Whatever goes wrong (an HTTP error, a timeout, a
connection lost, fewer bytes than announced, a hash that differs) raises a ValueError naming the
URL and what happened, and leaves nothing in the cache.
"""
from __future__ import annotations

import hashlib
import http.client
import re
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import torch

from ..files import atomic_write

__all__ = ['DOWNLOAD_TIMEOUT', 'HF_PREFIX', 'cache_dir', 'fetch', 'fetch_hf', 'is_hf', 'is_url']

# an HF hub repository: hf://owner/name, or hf://owner/name@revision
HF_PREFIX = 'hf://'
# what a model repository's weights are in (safetensors first, as read_checkpoint prefers)
_HF_WEIGHTS = ['*.safetensors', '*.safetensors.index.json', 'pytorch_model*.bin',
               'pytorch_model.bin.index.json', 'config.json']

# seconds without a byte before a download is given up
DOWNLOAD_TIMEOUT = 60.0
_CHUNK = 1 << 20
# torch.hub's convention: the file name ends in -<first hex digits of its SHA-256>
_HASH_SUFFIX = re.compile(r'-([a-f0-9]{6,64})\.')


def is_url(source) -> bool:
    return isinstance(source, str) and source.startswith(('http://', 'https://'))


def is_hf(source) -> bool:
    return isinstance(source, str) and source.startswith(HF_PREFIX)


def fetch_hf(source: str) -> Path:
    """The local snapshot folder of an HF hub repository (``hf://owner/name[@revision]``),
    through ``huggingface_hub``: its cache (``HF_HOME``, ``HF_HUB_CACHE``), ``HF_HUB_OFFLINE``
    and token. Only the weights and ``config.json`` are downloaded."""
    repo, _, revision = source[len(HF_PREFIX):].partition('@')
    if repo.count('/') != 1:
        raise ValueError(f'{source}: an HF hub id is hf://owner/name or hf://owner/name@revision')
    try:
        import huggingface_hub
    except ImportError as e:
        raise ImportError(f'{source}: HF hub ids need huggingface_hub: pip install '
                          '"swinv2_backbone[hub]"') from e
    try:
        folder = huggingface_hub.snapshot_download(repo, revision=revision or None,
                                                   allow_patterns=_HF_WEIGHTS)
    except Exception as e:  # noqa: BLE001 - offline misses, 404s, auth, network: one message
        raise ValueError(f'{source}: the HF hub gave no snapshot ({type(e).__name__}: {e})') from e
    return Path(folder)


def cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / 'checkpoints'


def fetch(url: str, timeout: float | None = None, progress: bool = True) -> Path:
    """The cached file of ``url``, downloaded first if the cache does not hold it."""
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name:
        raise ValueError(f'{url}: the URL names no file')
    target = cache_dir() / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, 'wb') as out:
            digest = _download(url, out, DOWNLOAD_TIMEOUT if timeout is None else timeout,
                               progress)
        expected = _HASH_SUFFIX.search(name)
        if expected and not digest.startswith(expected.group(1)):
            raise ValueError(f'{url}: the download is corrupt: its SHA-256 begins '
                             f'{digest[:len(expected.group(1))]}, the file name says '
                             f'{expected.group(1)}')

    atomic_write(target, write)
    return target


def _download(url: str, out, timeout: float, progress: bool) -> str:
    """Stream ``url`` into ``out``; the SHA-256 (hex) of what arrived."""
    digest = hashlib.sha256()
    done = total = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get('Content-Length') or 0)
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    of = f' of {total / 2**20:.1f}' if total else ''
                    print(f'\rdownloading {url}: {done / 2**20:.1f}{of} MiB', end='',
                          file=sys.stderr, flush=True)
    except urllib.error.HTTPError as e:
        raise ValueError(f'{url}: the server answered HTTP {e.code} {e.reason}') from e
    except http.client.IncompleteRead as e:  # the connection closed before Content-Length
        raise ValueError(f'{url}: the download is truncated: {done + len(e.partial)} of '
                         f'{total} bytes arrived') from e
    except (socket.timeout, TimeoutError) as e:
        raise ValueError(f'{url}: no data for {timeout:g} s (timed out)') from e
    except (urllib.error.URLError, OSError) as e:  # refused, reset, truncated chunked bodies
        reason = getattr(e, 'reason', e)
        raise ValueError(f'{url}: the download failed ({type(e).__name__}: {reason})') from e
    finally:
        if progress:
            print(file=sys.stderr)
    if total and done != total:
        raise ValueError(f'{url}: the download is truncated: {done} of {total} bytes arrived')
    return digest.hexdigest()
