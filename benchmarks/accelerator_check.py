"""The accelerator check: one call on a lent GPU that returns figures even when cut off.

  bash benchmarks/accelerator_check.sh OUT_DIR     # installs carried wheels, then runs this
  QUICK=1 bash benchmarks/accelerator_check.sh OUT_DIR    # the same stages, tiny, on any CPU

Stages run cheapest and most important first, each a process of its own under `timeout -k`
of the time it may take (its cap, and never past the whole check's budget, BUDGET_S, 480 s
by default, less the time kept for the stages after it):
  0 preflight    machine, versions, platform, imports without TensorFlow, one seed step;
                 the check stops here if it fails
  1 correctness  seed CGAN: accelerator vs CPU, device vs host feed, bf16 vs fp32, TF32
  2 speed        train_benchmark.py: seed CGAN (and MLP CGAN) JAX rows vs PyTorch rows
  3 learning     results.py: the seed CGAN's first epoch, fp32 and bf16, scored
  4 more         as time allows: larger batches, torch.compile, the seed pair's 40 epochs,
                 then other recipes' budgets, cheapest first
  5 tests        pytest of the accelerator paths, deterministic ops, one device
Run directories live in WORK (/tmp/accelerator_check_work). OUT_DIR receives at most four flat
files, rewritten as results come in (every POLL_S seconds and after every stage): summary.md,
check.json (every stage's JSON, its exit status, seconds and XLA compiles), grid.png (a
sample grid of the learning stage) and logs.tgz (every stage's log, truncated to its end).
STAGES=speed,tests runs only those (preflight always runs).
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time

import accelerator_summary as summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
COMPILE_RE = re.compile(r'Finished XLA compilation of (.+?) in ([0-9.eE+-]+) sec')
LOG_TAIL_BYTES = 2 << 20  # of each log in logs.tgz
POLL_S = 15.0
RECIPES_CHEAPEST_FIRST = ('cgan_mlp_concat', 'cgan_mlp_embed', 'gan_mlp', 'dcgan28', 'acgan',
                          'cgan_projection', 'cdcgan', 'dcgan', 'wgan_gp', 'cwgan_gp', 'wgan')


class Check:
  """The check's state: where things go, the clock, what each stage gave."""

  def __init__(self, out: str, work: str, quick: bool, budget_s: float, data_dir: str):
    self.out, self.work, self.quick, self.data = out, work, quick, data_dir
    self.t0, self.budget = time.monotonic(), budget_s
    self.stages: dict[str, dict] = {}
    os.makedirs(out, exist_ok=True)
    os.makedirs(work, exist_ok=True)

  def left(self) -> float:
    return self.budget - (time.monotonic() - self.t0)

  def run(self, name: str, cap_s: float, cmds: list[list[str]], keep_s: float = 0.0,
          env: dict | None = None, json_file: str | None = None) -> int:
    """Runs a stage's commands in turn, all together within min(cap, time left - keep)."""
    deadline = time.monotonic() + min(cap_s, self.left() - keep_s)
    log = os.path.join(self.work, f'{name}.log')
    info = self.stages.setdefault(name, dict(status='running', cap_s=cap_s, commands=[]))
    info['limit_s'] = round(deadline - time.monotonic(), 1)
    rc, t = 0, time.monotonic()
    for cmd in cmds:
      limit = deadline - time.monotonic()
      if limit < 5:
        rc = 124
        info['commands'].append(dict(cmd=' '.join(cmd), rc='not started: no time left'))
        continue
      rc = self._one(cmd, limit, log, env, info, json_file)
      info['commands'].append(dict(cmd=' '.join(cmd), rc=rc))
    info.update(seconds=round(time.monotonic() - t, 1), rc=rc,
                status='ok' if rc == 0 else ('timed out' if rc in (124, 137) else 'failed'),
                **_compiles(log))
    self.publish()
    return rc

  def _one(self, cmd, limit, log, env, info, json_file) -> int:
    with open(log, 'a') as f:
      f.write(f'\n=== {" ".join(cmd)} (limit {limit:.0f} s)\n')
      f.flush()
      proc = subprocess.Popen(['timeout', '-k', '5', f'{limit:.0f}', *cmd], cwd=ROOT,
                              stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
      while proc.poll() is None:
        try:
          proc.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
          info.update(seconds=round(time.monotonic() - self.t0, 1), **_compiles(log))
          self.publish()  # what the stage has written so far comes back even if we are cut off
    return proc.returncode

  def publish(self) -> None:
    """Rewrites check.json, summary.md, grid.png and logs.tgz in OUT from what is in WORK."""
    data = dict(quick=self.quick, budget_s=self.budget, elapsed_s=round(self.budget - self.left(), 1),
                date=time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()), stages={})
    for name, info in self.stages.items():
      data['stages'][name] = {**info, 'results': _read_jsons(self.work, name)}
    _write(os.path.join(self.out, 'check.json'), json.dumps(data, indent=1, default=str))
    try:
      text = summary.render(data)
    except Exception as e:  # noqa: BLE001 -- the JSON is the record; the summary a view of it
      text = f'# accelerator check\n\nsummary failed: {type(e).__name__}: {e}\n'
    _write(os.path.join(self.out, 'summary.md'), text)
    grid = _grid(self.work)
    if grid:
      shutil.copyfile(grid, os.path.join(self.out, 'grid.png'))
    self._logs()

  def _logs(self) -> None:
    tmp = os.path.join(self.out, 'logs.tgz.tmp')
    with tarfile.open(tmp, 'w:gz') as tar:
      for name, path in _log_files(self.work):
        with open(path, 'rb') as f:
          f.seek(max(0, os.path.getsize(path) - LOG_TAIL_BYTES))
          data = f.read()
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), int(time.time())
        tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, os.path.join(self.out, 'logs.tgz'))


def _write(path: str, text: str) -> None:
  with open(f'{path}.tmp', 'w') as f:
    f.write(text)
  os.replace(f'{path}.tmp', path)


def _compiles(log: str) -> dict:
  """XLA compilations the stage's processes logged (JAX_LOG_COMPILES): count and seconds."""
  try:
    with open(log, errors='replace') as f:
      found = [float(m.group(2)) for m in COMPILE_RE.finditer(f.read())]
  except OSError:
    found = []
  return dict(xla_compiles=len(found), xla_compiles_over_1s=sum(s >= 1 for s in found),
              xla_compile_s=round(sum(found), 1))


def _read_jsons(work: str, stage: str) -> dict:
  """{tag: JSON} of the stage's files in WORK: <stage>_<tag>.json, <stage>_<tag>/results.json."""
  out = {}
  for name in sorted(os.listdir(work)):
    path = os.path.join(work, name)
    if not name.startswith(f'{stage}_'):
      continue
    if os.path.isdir(path):
      path = os.path.join(path, 'results.json')
    elif not name.endswith('.json'):
      continue
    tag = name[len(stage) + 1:].removesuffix('.json')
    try:
      with open(path) as f:
        out[tag] = json.load(f)
    except FileNotFoundError:
      pass
    except (OSError, ValueError) as e:  # a file being rewritten is replaced whole, never torn
      out[tag] = {'unreadable': str(e)}
  return out


def _log_files(work: str):
  """(name in the archive, path): logs and reports of WORK, not runs or caches."""
  for dirpath, dirnames, filenames in os.walk(work):
    dirnames[:] = [d for d in dirnames if not d.endswith('_runs') and d != 'xla_cache']
    for name in sorted(filenames):
      if name.endswith(('.log', '.json', '.md', '.xml')):
        path = os.path.join(dirpath, name)
        yield os.path.relpath(path, work), path


def _grid(work: str) -> str | None:
  for path in ('more_results/gan_vs_cgan.png', 'learning_out_float32/cgan_epoch_0001.png'):
    if os.path.exists(os.path.join(work, path)):
      return os.path.join(work, path)
  return None


def _bench(c: Check, tag: str, config: str, limit_s: float, *flags: str) -> list[str]:
  return [PY, 'benchmarks/train_benchmark.py', f'--config=configs/{config}.py',
          f'--config.data_dir={c.data}', '--config.allow_download=false',
          f'--json={c.work}/{tag}.json', f'--time_budget_s={max(limit_s - 20, 10):.0f}', *flags]


def _results(c: Check, tag: str, recipes: str, *flags: str) -> list[str]:
  return [PY, 'benchmarks/results.py', f'--recipes={recipes}', f'--runs_dir={c.work}/{tag}_runs',
          f'--out_dir={c.work}/{tag}', f'--override=data_dir={c.data}',
          '--override=allow_download=false', *flags]


def stages(c: Check, wanted: set[str]) -> int:
  q = c.quick
  stage_py = [PY, 'benchmarks/accelerator_stages.py']
  common = [f'--data_dir={c.data}']
  tests_s = 60  # kept back for the last stage
  rc = c.run('preflight', 40 if not q else 90,
             [[*stage_py, 'preflight', f'--json={c.work}/preflight_report.json', *common,
               *([] if q else ['--expect_gpu'])]])
  if rc != 0:
    return rc  # nothing after it can work
  if 'correctness' in wanted:
    c.run('correctness', 75 if not q else 120,
          [[*stage_py, 'correctness', f'--json={c.work}/correctness_report.json', *common,
            f'--steps={2 if q else 5}']], keep_s=tests_s)
  if 'speed' in wanted:
    cap = 120 if not q else 150
    # QUICK: every kind of row once (the bf16 step is proven by the correctness stage).
    cgan = (['--steps=2', '--repeats=1', '--pipelines=numpy,device:2,trainer',
             '--dtypes=float32', '--config.num_train_examples=256'] if q else
            ['--steps=937', '--repeats=3', '--pipelines=numpy,device:epoch,trainer',
             '--dtypes=float32,bfloat16'])
    mlp = ['--steps=200', '--repeats=3', '--pipelines=numpy,device:epoch',
           '--dtypes=float32,bfloat16', '--torch=eager,eager_tf32']
    cmds = [_bench(c, 'speed_cgan', 'cgan_fashion_mnist', cap * 0.7, *cgan, '--batch_sizes=64',
                   '--torch=eager,autocast_bf16' if q else '--torch=eager,eager_tf32,autocast_bf16')]
    if not q:  # QUICK: the MLP row is the same command on another config
      cmds.append(_bench(c, 'speed_mlp', 'cgan_mlp_concat', cap * 0.3, *mlp))
    c.run('speed', cap, cmds, keep_s=tests_s)
  if 'learning' in wanted:
    # QUICK leaves the InceptionV3 scores out (~4 images/s on a 2-core CPU); a GPU scores
    # its 10,000 samples in seconds.
    small = (['--override=num_train_examples=256', '--num_samples=300', '--kid_subsets=2',
              '--features=classifier'] if q else [])
    c.run('learning', 120 if not q else 150, [
        _results(c, f'learning_out_{dtype}', 'cgan', '--epochs=1', f'--override=dtype={dtype}',
                 *small) for dtype in (('float32',) if q else ('float32', 'bfloat16'))],
          keep_s=tests_s)
  if 'more' in wanted:
    if q:
      cmds = [_bench(c, 'more_b128', 'cgan_fashion_mnist', 40, '--steps=1', '--repeats=1',
                     '--pipelines=numpy', '--batch_sizes=128', '--torch=off',
                     '--config.num_train_examples=256')]
    else:
      cmds = [_bench(c, 'more_large', 'cgan_fashion_mnist', 60, '--steps=50', '--repeats=2',
                     '--pipelines=device:epoch', '--batch_sizes=256,1024',
                     '--dtypes=float32,bfloat16', '--torch=eager,eager_tf32'),
              _bench(c, 'more_compile', 'cgan_fashion_mnist', 60, '--steps=100', '--repeats=2',
                     '--pipelines=device:epoch', '--torch=compile,eager'),
              _results(c, 'more_results', 'cgan'), _results(c, 'more_results', 'gan')]
      cmds += [_results(c, 'more_results', r) for r in RECIPES_CHEAPEST_FIRST]
    c.run('more', 10_000, cmds, keep_s=tests_s)
  if 'tests' in wanted:
    tests = (['tests/test_losses.py::test_cross_entropy_matches_the_formula'] if q else
             ['tests/test_accelerator_paths.py', 'tests/test_steps.py', 'tests/test_losses.py',
              'tests/test_cuda_export.py', '-m', 'not slow'])
    c.run('tests', tests_s, [[PY, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-p', 'no:xdist',
                              f'--junitxml={c.work}/tests_junit.xml', *tests]],
          env=dict(JAX_DEFAULT_MATMUL_PRECISION='highest',
                   XLA_FLAGS=(os.environ.get('XLA_FLAGS', '') +
                              ' --xla_gpu_deterministic_ops=true').strip()))
  return 0


def main() -> int:
  out = sys.argv[1] if len(sys.argv) > 1 else os.environ.get('OUT', '/tmp/accelerator_check')
  quick = bool(os.environ.get('QUICK'))
  work = os.environ.get('WORK', '/tmp/accelerator_check_work')
  shutil.rmtree(work, ignore_errors=True)
  data = os.environ.get('DATA_DIR') or os.path.join(ROOT, 'data/fashion-mnist')
  if not os.path.exists(os.path.join(data, 'train-images-idx3-ubyte.gz')):
    data = '/usr/share/datasets/fashion-mnist'
  os.environ.setdefault('JAX_PLATFORMS', 'cpu' if quick else 'cuda,cpu')
  os.environ.update(PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='2', CGAN_JAX_OFFLINE='1',
                    JAX_LOG_COMPILES='1')
  os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(work, 'xla_cache'))
  c = Check(out, work, quick, float(os.environ.get('BUDGET_S', 480)), data)
  all_stages = {'correctness', 'speed', 'learning', 'more', 'tests'}
  wanted = set(filter(None, os.environ.get('STAGES', '').split(','))) or all_stages
  if wanted - all_stages:
    print(f'error: STAGES names unknown stages {sorted(wanted - all_stages)}; known: '
          f'{sorted(all_stages)}', file=sys.stderr)
    return 2
  stages(c, wanted)
  c.publish()
  with open(os.path.join(out, 'summary.md')) as f:
    print(f.read())
  # 'more' runs until the budget is spent: its time-out is the plan, not a failure.
  failed = [n for n, s in c.stages.items() if s.get('status') != 'ok' and n != 'more']
  if failed:
    print(f'error: stages not ok: {", ".join(failed)}', file=sys.stderr)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
