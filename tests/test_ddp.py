"""DDP that survives activation checkpointing: with_cp=True and 'mlp', on the cpu and
batched paths, with frozen stages and drop path, under find_unused_parameters=True, plain, and
static_graph, train three steps in 2 gloo processes; the ranks stay identical and learn."""
from __future__ import annotations

import subprocess
import sys

SCRIPT = '''
import itertools, os, torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from swinv2_backbone import SwinV2Backbone
from swinv2_backbone.hosts.runner import finish_distributed
rank = int(os.environ['RANK'])
dist.init_process_group('gloo')
torch.set_num_threads(1)
for execution, with_cp, frozen, drop_path, mode in itertools.product(
        ['cpu', 'batched'], [True, 'mlp'], [-1, 1], [0.0, 0.2], ['find_unused', 'plain', 'static']):
    torch.manual_seed(0)  # the same initial weights on both ranks
    model = SwinV2Backbone(arch=dict(embed_dim=16, depths=(2, 2), num_heads=(1, 2)),
                           window_size=4, with_cp=with_cp, frozen_stages=frozen,
                           drop_path_rate=drop_path, execution=execution)
    model.init_weights()
    start = torch.cat([p.detach().flatten() for p in model.parameters()])
    ddp = DDP(model, find_unused_parameters=mode == 'find_unused', static_graph=mode == 'static')
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    try:
        for step in range(3):
            torch.manual_seed(100 + 7 * rank + step)  # each rank its own data and drop path
            loss = sum(o.pow(2).mean() for o in ddp(torch.randn(2, 3, 32, 33)))
            opt.zero_grad()
            loss.backward()
            opt.step()
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        other = flat.clone()
        dist.broadcast(other, 0)
        result = ('ok' if torch.equal(flat, other) and not torch.equal(flat, start)
                  else 'ranks differ or nothing learned')
    except Exception as e:
        result = f'{type(e).__name__}: {e}'.splitlines()[0]
    if rank == 0:
        print(f'case {execution} with_cp={with_cp} frozen={frozen} drop_path={drop_path} {mode}: '
              f'{result}', flush=True)
del ddp  # each reducer holds the group: finish_distributed frees them (cycles and all)
finish_distributed()  # before leaving it, else its gloo threads can abort at exit (SIGABRT)
'''


def test_ddp_with_activation_checkpointing_keeps_ranks_identical(tmp_path):
    script = tmp_path / 'ddp_matrix.py'
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone',
                           '--nproc_per_node', '2', str(script)],
                          capture_output=True, text=True, cwd=tmp_path)
    cases = [line for line in proc.stdout.splitlines() if line.startswith('case ')]
    assert proc.returncode == 0, (proc.stdout[-1500:], proc.stderr[-3000:])
    assert len(cases) == 48, proc.stdout[-3000:]
    failed = [c for c in cases if not c.endswith(': ok')]
    assert not failed, failed
