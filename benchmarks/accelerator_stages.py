"""The in-process stages of the accelerator check (benchmarks/accelerator_check.py runs them).

  python benchmarks/accelerator_stages.py preflight   --json=F --data_dir=D
  python benchmarks/accelerator_stages.py correctness --json=F --data_dir=D [--steps=5]

preflight: the machine (nvidia-smi, versions), the platform, every entry point imported with
TensorFlow absent, one jitted seed step. correctness: the seed CGAN's first steps on real
batches on the accelerator and on the CPU in one process (JAX_PLATFORMS=cuda,cpu) at the
highest matmul precision; the device feed against the host feed; bfloat16 against float32;
the default precision (TF32 on Hopper) against the highest. Each writes its JSON as it goes.
"""

import argparse
import contextlib
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.modules.update({m: None for m in ('tensorflow', 'tensorflow_datasets')})  # as on the GPU host

ENTRY_POINTS = ('train.py', 'eval.py', 'generate.py', 'benchmarks/results.py',
                'benchmarks/train_benchmark.py')
VERSIONED = ('jax', 'jaxlib', 'flax', 'optax', 'orbax.checkpoint', 'numpy', 'ml_collections',
             'clu', 'absl', 'torch')
# Agreement asked of two runs of the same steps (tolerances of tests/test_steps.py's 1 vs 4
# devices: the losses, and what G computes, since Adam turns fp noise in ~0 gradients into
# lr-sized parameter moves).
LOSS_RTOL, LOSS_ATOL, IMAGE_ATOL = 1e-3, 1e-5, 2e-3
BF16_LOSS_RTOL, BF16_IMAGE_ATOL = 5e-2, 5e-2  # bfloat16 (8 significant bits) against float32


class Report:
  """A stage's results, rewritten to its JSON file after every addition."""

  def __init__(self, path: str):
    self.path, self.data = path, {'complete': False}

  def add(self, **items) -> None:
    self.data.update(items)
    tmp = f'{self.path}.tmp'
    with open(tmp, 'w') as f:
      json.dump(self.data, f, indent=1, default=str)
    os.replace(tmp, self.path)


def _versions() -> dict:
  out = {'python': platform.python_version()}
  for name in VERSIONED:
    try:
      out[name] = getattr(importlib.import_module(name), '__version__', '?')
    except Exception as e:  # noqa: BLE001 -- recorded, not fatal
      out[name] = f'absent ({type(e).__name__})'
  return out


def _import_script(path: str) -> subprocess.Popen:
  """Starts loading an entry point as a module (its main not run) in a fresh process."""
  code = (f"import sys; sys.path[:0] = [{ROOT!r}, {os.path.join(ROOT, 'benchmarks')!r}]; "
          "sys.modules.update(tensorflow=None, tensorflow_datasets=None); "
          "import importlib.util as u; "
          f"s = u.spec_from_file_location('entry', {os.path.join(ROOT, path)!r}); "
          "s.loader.exec_module(u.module_from_spec(s))")
  return subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)


def _seed_config(data_dir: str, **overrides):
  from configs import cgan_fashion_mnist
  c = cgan_fashion_mnist.get_config()
  c.data_dir, c.allow_download, c.num_devices = data_dir, False, 1
  c.update(overrides)
  return c


def preflight(args, report: Report) -> None:
  try:
    smi = subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total,driver_version,clocks.max.sm',
                          '--format=csv,noheader'], capture_output=True, text=True, timeout=20)
    report.add(nvidia_smi=smi.stdout.strip() or smi.stderr.strip())
  except (OSError, subprocess.TimeoutExpired) as e:
    report.add(nvidia_smi=f'unavailable ({e})')
  procs = {p: _import_script(p) for p in ENTRY_POINTS}  # in parallel with what follows
  import jax
  report.add(versions=_versions(), devices=[str(d) for d in jax.devices()],
             platform=jax.devices()[0].platform, device_kind=jax.devices()[0].device_kind)
  if args.expect_gpu and jax.devices()[0].platform != 'gpu':
    raise SystemExit(f'error: expected a GPU, JAX sees {jax.devices()}')
  import pkgutil
  import cgan_jax
  failed = {}
  for m in pkgutil.walk_packages(cgan_jax.__path__, 'cgan_jax.'):
    try:
      importlib.import_module(m.name)
    except Exception as e:  # noqa: BLE001
      failed[m.name] = f'{type(e).__name__}: {e}'
  for path, proc in procs.items():
    _, err = proc.communicate(timeout=120)
    if proc.returncode:
      failed[path] = err.strip().splitlines()[-1] if err.strip() else f'exit {proc.returncode}'
  report.add(imports_failed=failed, tensorflow_loaded=_tf_loaded())
  if failed:
    raise SystemExit(f'error: imports failed: {failed}')
  import numpy as np
  from cgan_jax import parallel, tasks
  config = _seed_config(args.data_dir)
  mesh = parallel.make_mesh(1)
  task = tasks.build(config, parallel.batch_norm_axis(mesh))
  state = jax.device_put(task.init_state(jax.random.PRNGKey(0)), parallel.replicated(mesh))
  rs = np.random.RandomState(0)
  batch = {'image': rs.randint(0, 256, (1, 64, 28, 28, 1)).astype(np.uint8),
           'label': rs.randint(0, 10, (1, 64)).astype(np.int32)}
  step = parallel.data_parallel(task.train_step, mesh)
  t = time.perf_counter()
  state, metrics = step(state, parallel.global_batch(batch, mesh))
  metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
  report.add(first_step_s=time.perf_counter() - t, first_step_metrics=metrics)
  if not all(np.isfinite(v) for v in metrics.values()):
    raise SystemExit(f'error: the first step is not finite: {metrics}')


def _tf_loaded() -> bool:
  return any(sys.modules.get(m) is not None for m in ('tensorflow', 'tensorflow_datasets'))


class _Runs:
  """The seed CGAN's first steps on one device, from one initial state, on fixed batches."""

  def __init__(self, data_dir: str, steps: int):
    import jax
    import numpy as np
    from cgan_jax import input_pipeline, tasks
    self.data_dir, self.steps = data_dir, steps
    config = _seed_config(data_dir)
    self.task = tasks.build(config, None)
    self.images, self.labels = self.task.load('train')
    self.state0 = jax.device_get(self.task.init_state(jax.random.PRNGKey(config.seed)))
    self.seed = config.seed
    it = input_pipeline.batches(self.images, self.labels, global_batch=config.batch_size,
                                seed=config.seed, epoch=0, micro_steps=self.task.micro_steps,
                                pipeline='numpy')
    self.batches = [next(it) for _ in range(steps)]
    rs = np.random.RandomState(1)
    self.z = rs.uniform(-1, 1, (50, self.state0.gan.z_dim)).astype(np.float32)
    self.y = np.arange(50, dtype=np.int32) % 10

  def _mesh(self, device):
    import numpy as np
    from jax.sharding import Mesh
    from cgan_jax import parallel
    return Mesh(np.asarray([device]), (parallel.AXIS,))

  def _task(self, **overrides):
    from cgan_jax import tasks
    return tasks.build(_seed_config(self.data_dir, **overrides), None) if overrides else self.task

  def host(self, device, precision: str | None, **overrides):
    """(per-step metrics, final state) of `steps` host-fed steps on `device`."""
    import jax
    from cgan_jax import parallel
    mesh, task = self._mesh(device), self._task(**overrides)
    state = jax.device_put(self._state(task), parallel.replicated(mesh))
    step = parallel.data_parallel(task.train_step, mesh, donate=False)
    metrics = []
    with _precision(precision):
      for b in self.batches:
        state, m = step(state, parallel.global_batch(b, mesh))
        metrics.append(jax.device_get(m))
    return _stack(metrics), jax.device_get(state)

  def device_feed(self, device, precision: str | None):
    """The same steps in one dispatch of the device feed (the split resident on `device`)."""
    import jax
    from cgan_jax import device_input, parallel
    mesh, task = self._mesh(device), self.task
    state = jax.device_put(self._state(task), parallel.replicated(mesh))
    feed = device_input.DeviceFeed(task.train_step, self.images, self.labels, mesh,
                                   global_batch=self.batches[0]['label'].shape[1], seed=0,
                                   steps_per_dispatch=self.steps,
                                   micro_steps=task.micro_steps)
    feed.start_epoch(0, 0)
    with _precision(precision):
      state, metrics = feed.run(state, self.steps)
    return dict(jax.device_get(metrics)), jax.device_get(state)

  def _state(self, task):
    """The initial state of `task`, made on the default device from the same key as every
    other run's (a bfloat16 task keeps float32 parameters: the same values)."""
    import jax
    if task is self.task:
      return self.state0
    return jax.device_get(task.init_state(jax.random.PRNGKey(self.seed)))

  def images_of(self, state):
    """What G draws (inference mode) from fixed noise, on the CPU at highest precision."""
    import jax
    import numpy as np
    from cgan_jax import state as state_lib
    with jax.default_device(jax.devices('cpu')[0]), jax.default_matmul_precision('highest'):
      return np.asarray(state_lib.generate(state.gan, state.g_params, state.g_stats,
                                           self.z, self.y), np.float32)


def _precision(precision: str | None):
  """jax.default_matmul_precision(precision), or the platform's default for None."""
  import jax
  return jax.default_matmul_precision(precision) if precision else contextlib.nullcontext()


def _stack(metrics: list[dict]) -> dict:
  import numpy as np
  return {k: np.asarray([float(m[k]) for m in metrics]) for k in metrics[0]}


def _compare(a, b, images_a, images_b, loss_rtol, image_atol) -> dict:
  """How far run b is from run a: losses per step (relative) and G's images (absolute)."""
  import numpy as np
  (ma, _), (mb, _) = a, b
  worst, finite = 0.0, True
  for k in ma:
    x, y = np.asarray(ma[k], np.float64), np.asarray(mb[k], np.float64)[:len(ma[k])]
    finite &= bool(np.isfinite(y).all())
    worst = max(worst, float(np.max(np.abs(x - y) / (np.abs(x) + LOSS_ATOL / loss_rtol))))
  image_diff = float(np.max(np.abs(images_a - images_b)))
  return dict(loss_max_rel_diff=worst, image_max_abs_diff=image_diff, finite=finite,
              losses_a={k: [round(float(v), 6) for v in ma[k]] for k in ma},
              losses_b={k: [round(float(v), 6) for v in mb[k]] for k in mb},
              tolerances=dict(loss_rtol=loss_rtol, image_atol=image_atol),
              ok=bool(finite and worst <= loss_rtol and image_diff <= image_atol))


def correctness(args, report: Report) -> None:
  import jax
  accel = jax.devices()[0]
  cpu = jax.devices('cpu')[0]
  runs = _Runs(args.data_dir, args.steps)
  report.add(device=str(accel), cpu=str(cpu), steps=args.steps, batch_size=64,
             note='seed CGAN (configs/cgan_fashion_mnist.py), real Fashion-MNIST batches of '
                  'epoch 0, one initial state; G images from fixed noise drawn on the CPU')
  t = time.perf_counter()
  ref = runs.host(accel, 'highest')
  ref_images = runs.images_of(ref[1])
  checks = {}

  def check(name, run, loss_rtol=LOSS_RTOL, image_atol=IMAGE_ATOL):
    t0 = time.perf_counter()
    try:
      out = run()
      checks[name] = _compare(ref, out, ref_images, runs.images_of(out[1]), loss_rtol,
                              image_atol)
    except Exception:  # noqa: BLE001 -- recorded; the other checks still run
      checks[name] = dict(ok=False, error=traceback.format_exc(limit=4))
    checks[name]['seconds'] = round(time.perf_counter() - t0, 2)
    report.add(checks=checks)

  report.add(reference=f'{accel.platform} host feed, float32, matmul precision highest',
             reference_seconds=round(time.perf_counter() - t, 2))
  check('cpu_vs_accelerator', lambda: runs.host(cpu, 'highest'))
  check('device_feed_vs_host_feed', lambda: runs.device_feed(accel, 'highest'))
  check('bfloat16_vs_float32', lambda: runs.host(accel, 'highest', dtype='bfloat16'),
        BF16_LOSS_RTOL, BF16_IMAGE_ATOL)
  check('default_precision_vs_highest', lambda: runs.host(accel, None), BF16_LOSS_RTOL,
        BF16_IMAGE_ATOL)
  report.add(all_ok=all(c.get('ok') for c in checks.values()))
  if not report.data['all_ok']:
    raise SystemExit(f'error: checks not within tolerance: '
                     f'{[n for n, c in checks.items() if not c.get("ok")]}')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('stage', choices=('preflight', 'correctness'))
  parser.add_argument('--json', required=True)
  parser.add_argument('--data_dir', required=True)
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--expect_gpu', action='store_true')
  args = parser.parse_args()
  report = Report(args.json)
  t = time.perf_counter()
  done = False
  try:
    {'preflight': preflight, 'correctness': correctness}[args.stage](args, report)
    done = True
  except Exception:
    report.add(error=traceback.format_exc(limit=6))
    raise
  finally:
    report.add(seconds=round(time.perf_counter() - t, 2), tensorflow_loaded=_tf_loaded(),
               complete=done)


if __name__ == '__main__':
  main()
