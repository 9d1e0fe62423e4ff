"""Checkpoints named by URL, against a real HTTP server on localhost: downloaded once into
torch.hub's cache, verified, and nothing left in the cache when a download fails."""
from __future__ import annotations

import hashlib
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from swinv2_backbone import SwinV2Backbone, read_checkpoint, save_checkpoint
from swinv2_backbone.weights import download

ARCH = dict(embed_dim=16, depths=(1, 1), num_heads=(1, 2))


class _Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[str] = []

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        self.requests.append(self.path)
        body = self.files.get(self.path.split('/')[-1].split('-')[0].split('.')[0])
        if body is None:
            self.send_error(404, 'Not Found')
            return
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if 'stall' in self.path:
            time.sleep(3)
        elif 'trunc' in self.path:
            body = body[:len(body) // 3]  # announced whole, closed after a third
        self.wfile.write(body)


@pytest.fixture()
def server(tmp_path, monkeypatch):
    """Serves the weights of a small backbone under names that say how to misbehave."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setattr(download, 'DOWNLOAD_TIMEOUT', 1.0)
    model = SwinV2Backbone(arch=ARCH, window_size=4)
    model.init_weights()
    save_checkpoint(model.state_dict(), tmp_path / 'w.pth')
    weights = (tmp_path / 'w.pth').read_bytes()
    _Handler.files = {'w': weights, 'trunc': weights, 'stall': weights,
                      'junk': b'not a checkpoint at all' * 100}
    _Handler.requests = []
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield model, f'http://127.0.0.1:{httpd.server_address[1]}', hashlib.sha256(weights)
    httpd.shutdown()
    httpd.server_close()


def _cache():
    return sorted(p.name for p in download.cache_dir().iterdir())


def test_init_cfg_url_downloads_once_into_the_cache(server):
    model, base, _ = server
    url = f'{base}/w.pth'
    for _ in range(2):
        other = SwinV2Backbone(arch=ARCH, window_size=4,
                               init_cfg=dict(type='Pretrained', checkpoint=url))
        other.init_weights()
        own = model.state_dict()
        assert all(torch.equal(v, own[k]) for k, v in other.state_dict().items())
    assert _Handler.requests == ['/w.pth']  # the second build read the cache
    assert _cache() == ['w.pth']
    # the mode a plain open gives under the umask, not the temporary file's 0600
    mask = os.umask(0o022)
    os.umask(mask)
    assert (download.cache_dir() / 'w.pth').stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_hash_suffix_is_checked(server):
    _, base, digest = server
    good = f'{base}/w-{digest.hexdigest()[:8]}.pth'
    assert read_checkpoint(good).keys() == server[0].state_dict().keys()
    assert _cache() == [f'w-{digest.hexdigest()[:8]}.pth']
    bad = f'{base}/w-deadbeef.pth'
    with pytest.raises(ValueError, match=r'w-deadbeef\.pth: the download is corrupt: its '
                                         r'SHA-256 begins [0-9a-f]{8}, the file name says '
                                         r'deadbeef'):
        read_checkpoint(bad)
    assert _cache() == [f'w-{digest.hexdigest()[:8]}.pth']


@pytest.mark.parametrize('name,message', [
    ('missing.pth', 'the server answered HTTP 404 Not Found'),
    ('trunc.pth', r'the download is truncated: \d+ of \d+ bytes arrived'),
    ('stall.pth', r'no data for 1 s \(timed out\)'),
    ('junk.pth', 'the downloaded file does not read, and was removed from the cache'),
])
def test_a_failed_download_names_the_url_and_leaves_nothing(server, name, message):
    _, base, _ = server
    with pytest.raises(ValueError, match=f'{base}/{name}: {message}'):
        read_checkpoint(f'{base}/{name}')
    assert _cache() == []


def test_unreachable_server_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    with pytest.raises(ValueError, match=r'http://127\.0\.0\.1:9/w\.pth: the download failed'):
        read_checkpoint('http://127.0.0.1:9/w.pth')
    assert not download.cache_dir().exists() or _cache() == []


def _hub_cache(root, repo: str, files: dict) -> None:
    """A huggingface_hub cache holding one snapshot of ``repo``, as a download leaves it."""
    commit = 'a' * 40
    base = root / f'models--{repo.replace("/", "--")}'
    (base / 'refs').mkdir(parents=True)
    (base / 'refs' / 'main').write_text(commit)
    snapshot = base / 'snapshots' / commit
    snapshot.mkdir(parents=True)
    for name, write in files.items():
        write(snapshot / name)


def test_hf_hub_id_reads_the_hub_cache_offline(tmp_path, monkeypatch):
    import transformers
    config = transformers.Swinv2Config(image_size=64, window_size=4, embed_dim=16,
                                       depths=[1, 1], num_heads=[1, 2])
    hf = transformers.Swinv2Model(config)
    hf.save_pretrained(tmp_path / 'saved')  # model.safetensors + config.json
    _hub_cache(tmp_path / 'hub', 'someone/swinv2-test', {
        name: (lambda dst, src=tmp_path / 'saved' / name: dst.write_bytes(src.read_bytes()))
        for name in ('model.safetensors', 'config.json')})
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'hub'))
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    import huggingface_hub.constants as constants
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'hub'))
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    model = SwinV2Backbone(arch=ARCH, window_size=4, out_norm=False,
                           init_cfg=dict(type='Pretrained', checkpoint='hf://someone/swinv2-test'))
    model.init_weights()
    assert torch.equal(model.patch_embed.proj.weight,
                       hf.embeddings.patch_embeddings.projection.weight)
    with pytest.raises(ValueError, match=r'hf://someone/missing: the HF hub gave no snapshot'):
        read_checkpoint('hf://someone/missing')
    with pytest.raises(ValueError, match='an HF hub id is hf://owner/name'):
        read_checkpoint('hf://just-a-name')
