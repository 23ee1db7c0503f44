"""The accelerator check's dry run (QUICK=1) on this CPU, in a world like the GPU host's.

The GPU host has no TensorFlow, TFDS or TensorBoard, and returns at most 8 flat-enough files
of at most 16 MiB from $OUT. Here those three packages are made unimportable for every process
the check starts (a sitecustomize on PYTHONPATH), JAX sees one CPU device, and the data comes
from a folder laid out as the carried one (data/fashion-mnist/).
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BLOCKED = ('tensorflow', 'tensorflow_datasets', 'tensorboard')
STAGES = ('preflight', 'correctness', 'speed', 'learning', 'more', 'tests')

# Every process the check starts imports this first (site imports sitecustomize from
# PYTHONPATH): the blocked packages are absent as where they are not installed (`import`
# raises ModuleNotFoundError, importlib.util.find_spec says None).
SITECUSTOMIZE = '''
import sys
sys.modules.update(dict.fromkeys({blocked!r}))
'''

# What the device tool brings back from $OUT (its README's Limits).
MAX_FILES, MAX_DEPTH, MAX_FILE_BYTES, MAX_TOTAL_BYTES = 8, 2, 16 << 20, 64 << 20
NAME_RE = re.compile(r'^[A-Za-z0-9._-]+$')


def _returnable(out: pathlib.Path) -> list[str]:
  """What would not come back from OUT (empty if all of it would)."""
  problems, files = [], [p for p in out.rglob('*') if p.is_file()]
  if len(files) > MAX_FILES:
    problems.append(f'{len(files)} files > {MAX_FILES}')
  if sum(p.stat().st_size for p in files) > MAX_TOTAL_BYTES:
    problems.append('over 64 MiB together')
  for p in out.rglob('*'):
    rel = p.relative_to(out)
    if not all(NAME_RE.match(part) for part in rel.parts):
      problems.append(f'{rel}: name')
    if p.is_file() and (len(rel.parts) - 1 > MAX_DEPTH or p.stat().st_size > MAX_FILE_BYTES):
      problems.append(f'{rel}: too deep or too large')
    if p.is_symlink():
      problems.append(f'{rel}: a link')
  return problems


@pytest.mark.slow
@pytest.mark.long('the whole check, every stage, in one run: ~3 min on 2 cores')
def test_quick_dry_run_runs_every_stage_without_tensorflow(tmp_path, fashion_dir):
  site = tmp_path / 'site'
  site.mkdir()
  (site / 'sitecustomize.py').write_text(SITECUSTOMIZE.format(blocked=BLOCKED))
  data = tmp_path / 'carried' / 'fashion-mnist'  # as `make gpu-bundle` lays it out
  data.mkdir(parents=True)
  for name in os.listdir(fashion_dir):
    if name.endswith('-ubyte.gz'):
      shutil.copy(os.path.join(fashion_dir, name), data)
  out = tmp_path / 'OUT'
  env = {**os.environ, 'QUICK': '1', 'JAX_PLATFORMS': 'cpu', 'JAX_NUM_CPU_DEVICES': '1',
         'DATA_DIR': str(data), 'WORK': str(tmp_path / 'work'),
         'PYTHONPATH': os.pathsep.join([str(site), os.environ.get('PYTHONPATH', '')])}
  proc = subprocess.run(['bash', str(ROOT / 'benchmarks/accelerator_check.sh'), str(out)],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

  check = json.loads((out / 'check.json').read_text())
  assert list(check['stages']) == list(STAGES)
  for name, stage in check['stages'].items():
    assert stage['status'] == 'ok', (name, stage)
    assert stage['seconds'] <= stage['limit_s'] + 5, (name, stage)
  results = {n: s['results'] for n, s in check['stages'].items()}
  assert results['preflight']['report']['imports_failed'] == {}
  assert results['preflight']['report']['platform'] == 'cpu'
  assert all(c['ok'] for c in results['correctness']['report']['checks'].values())
  speed = results['speed']['cgan']['results']
  assert {r['name'].split()[0] for r in speed} >= {'jax/numpy', 'jax/device:2', 'jax/trainer',
                                                  'torch/eager'}
  assert all(r['s_per_step'] > 0 for r in speed)
  learned = [r for r in results['learning']['out_float32'] if r.get('epoch') == 1]
  assert learned and learned[0]['fid'] > 0
  assert ' passed' in (tmp_path / 'work' / 'tests.log').read_text()

  # What comes back: every file returnable, and the summary and logs are what they say.
  assert _returnable(out) == []
  assert sorted(p.name for p in out.iterdir()) == ['check.json', 'grid.png', 'logs.tgz',
                                                   'summary.md']
  summary = (out / 'summary.md').read_text()
  for name in STAGES:
    assert f'| {name} | ok |' in summary, summary
  with tarfile.open(out / 'logs.tgz') as tar:
    assert {f'{s}.log' for s in STAGES} <= set(tar.getnames())
  # TensorFlow was never imported: in that world it cannot be, and every stage still ran.
  assert results['preflight']['report']['tensorflow_loaded'] is False
  for name in BLOCKED:
    probe = subprocess.run([sys.executable, '-c', f'import {name}'], env=env, capture_output=True,
                           text=True, timeout=60)
    assert probe.returncode != 0 and 'ModuleNotFoundError' in probe.stderr, (name, probe.stderr)
