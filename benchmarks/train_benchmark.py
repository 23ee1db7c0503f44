"""Training throughput of a config: images/s, s/epoch, memory, GFLOP/s; PyTorch side by side.

  python benchmarks/train_benchmark.py --config=configs/cgan_fashion_mnist.py \
      [--steps=32] [--repeats=3] [--pipelines=device:1,device:100,device:epoch,numpy] \
      [--dtypes=float32,bfloat16] [--batch_sizes=64,256,1024] [--torch=eager,compile] \
      [--peak_gflops=330] [--json=/tmp/bench.json]

Each input pipeline is timed as the trainer runs it: 'device' (the split on device, up to
config.steps_per_dispatch steps per dispatch), 'numpy' or 'tf.data' (a host batch per
step). After a warm-up (compilation), `--steps` steps are timed `--repeats` times; the
median is reported. When `torch` is importable, the PyTorch peer (benchmarks/torch_cgan.py)
runs in the same process, its repeats interleaved with JAX's so both see the same load,
and the JAX/PyTorch ratio is printed. FLOPs per step come from XLA's cost analysis of the
compiled single step. Real Fashion-MNIST (or the config's dataset) is the input.
"""

import functools
import json
import os
import platform
import resource
import sys
import time
import unittest.mock
from typing import Callable

from absl import app, flags
from ml_collections import config_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(ROOT, 'configs/cgan_fashion_mnist.py'), 'Training config (a recipe).')
_STEPS = flags.DEFINE_integer('steps', 32, 'Timed steps per repeat.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed repeats (the median is reported).')
_PIPELINES = flags.DEFINE_list('pipelines', ['device', 'numpy'],
                               "Input pipelines to time: 'device' (config.steps_per_dispatch "
                               "steps per dispatch), 'device:K' (K steps), 'device:epoch', "
                               "'numpy', 'tf.data'.")
_TORCH = flags.DEFINE_list('torch', ['auto'],
                           "PyTorch peer modes to time: 'eager', 'compile' (torch.compile), "
                           "'auto' (= eager, when torch is importable and the config has a "
                           "peer: the infoGAN CGAN or the MLP CGAN), or 'off'.")
_DTYPES = flags.DEFINE_list('dtypes', ['float32'], "JAX compute dtypes: 'float32', 'bfloat16'.")
_BATCHES = flags.DEFINE_list('batch_sizes', [], 'Global batch sizes to time (default: the '
                             "config's).")
_PEAK = flags.DEFINE_float('peak_gflops', 0.0, "The machine's peak GFLOP/s (fp32), to print "
                           'the share of it the step reaches (0: not printed).')
_ABLATE = flags.DEFINE_bool('ablate_conv_transpose', False,
                             "Also time jax/device with the generator's fast (tap-wise kernel gradient) layer "
                             'swapped back to nn.ConvTranspose (docs/perf_notes.md).')
_JSON = flags.DEFINE_string('json', None, 'Also write the results here as JSON.')


def _load(config):
  """The task of the config (any model: noise-to-image or image-to-image) and its train data."""
  from cgan_jax import parallel, tasks
  # As the trainer builds it: BatchNorm without a cross-device axis on one device.
  task = tasks.build(config, parallel.batch_norm_axis(parallel.make_mesh(config.num_devices)))
  images, labels = task.load('train')
  return task, images, labels


def _jax_runners(config, task, images, labels) -> tuple[dict[str, Callable], float]:
  """{name: run(first_step, n) -> seconds}, and XLA's FLOP count of one step."""
  import jax
  import numpy as np
  from cgan_jax import device_input, input_pipeline, parallel

  mesh = parallel.make_mesh(config.num_devices)
  micro = task.micro_steps
  fresh = lambda: jax.device_put(task.init_state(jax.random.PRNGKey(config.seed)),
                                 parallel.replicated(mesh))
  step_fn = parallel.data_parallel(task.train_step, mesh)  # for the FLOP count
  spe = input_pipeline.steps_per_epoch(len(images), config.batch_size * micro)
  first_batch = next(input_pipeline.batches(images, labels, global_batch=config.batch_size,
                                            seed=config.seed, epoch=0, micro_steps=micro,
                                            pipeline='numpy'))
  cost = step_fn.lower(fresh(), parallel.global_batch(first_batch, mesh)).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get('flops', float('nan')))
  runners = {}

  def host(pipeline: str, train_step=task.train_step):
    state, step_fn = fresh(), parallel.data_parallel(train_step, mesh)

    def batches(first: int):
      """Batches from step `first` on, across epoch boundaries."""
      epoch, start = divmod(first, spe)
      while True:
        yield from input_pipeline.batches(images, labels, global_batch=config.batch_size,
                                          seed=config.seed, epoch=epoch, start_step=start,
                                          micro_steps=micro, pipeline=pipeline)
        epoch, start = epoch + 1, 0

    def run(first: int, n: int) -> float:
      nonlocal state
      it = batches(first)
      t = time.perf_counter()
      for _, batch in zip(range(n), it):
        state, metrics = step_fn(state, parallel.global_batch(batch, mesh))
      jax.block_until_ready((state, metrics))
      return time.perf_counter() - t
    return run

  def device(steps_per_dispatch: int, train_step=task.train_step):
    state = fresh()
    feed = device_input.DeviceFeed(train_step, images, labels, mesh,
                                   global_batch=config.batch_size, seed=config.seed,
                                   micro_steps=micro,
                                   steps_per_dispatch=steps_per_dispatch)

    def run(first: int, n: int) -> float:
      nonlocal state
      epoch, start = divmod(first, spe)
      feed.start_epoch(epoch, start)
      t = time.perf_counter()
      done = 0
      while done < n:  # chunks stop at epoch ends, as the trainer's do
        if start == spe:
          epoch, start = epoch + 1, 0
          feed.start_epoch(epoch, 0)
        k = min(feed.max_steps, n - done, spe - start)
        state, metrics = feed.run(state, k)
        done, start = done + k, start + k
      jax.block_until_ready((state, metrics))
      return time.perf_counter() - t
    return run

  def make(pipeline: str, train_step=task.train_step):
    if not pipeline.startswith('device'):
      return f'jax/{pipeline}', host(pipeline, train_step)
    k = pipeline.partition(':')[2] or config.steps_per_dispatch or 1
    k = spe if k == 'epoch' else int(k)
    return f'jax/device:{k}', device(k, train_step)

  for p in _PIPELINES.value:
    name, run = make(p)
    runners[name] = run
  if _ABLATE.value:
    from cgan_jax.models import infogan
    # A fresh function: its own jit cache entry, traced with nn.ConvTranspose.
    name, xla = make(_PIPELINES.value[0], lambda state, batch: task.train_step(state, batch))

    def run_xla(first: int, n: int) -> float:
      with unittest.mock.patch.object(infogan, '_FastConvT', infogan._ConvT):
        return xla(first, n)  # traced (once) with nn.ConvTranspose in the generator
    runners[f'{name}, nn.ConvTranspose'] = run_xla
  return runners, flops


def _torch_runners(config, images, labels) -> dict[str, Callable]:
  """{'torch/eager': run, 'torch/compile': run} as asked by --torch, where a peer exists."""
  modes = [m for m in _TORCH.value if m != 'off']
  modes = ['eager' if m == 'auto' else m for m in modes]
  from cgan_jax import models
  model = models.label(config)
  if (not modes or model not in ('infogan_cgan', 'mlp_cgan_concat')
      or config.get('n_critic', 1) != 1 or config.get('g_steps', 1) != 1):  # the peers' recipes
    return {}
  try:
    import torch
    import torch_cgan
  except ImportError:
    return {}
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  runners = {}
  for mode in dict.fromkeys(modes):
    trainer = torch_cgan.Trainer(images[..., 0], labels, config.batch_size, config.seed,
                                 model=model, device=device, compile=mode == 'compile')
    runners[f'torch/{mode}'] = trainer.time_steps
  return runners


def _device_memory() -> int | None:
  import jax
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get('peak_bytes_in_use')


def _variants(config):
  """One config per (batch size, dtype) asked for."""
  for batch in (_BATCHES.value or [config.batch_size]):
    for dtype in _DTYPES.value:
      c = config.copy_and_resolve_references()
      c.batch_size, c.dtype = int(batch), dtype
      yield c


def main(argv):
  del argv
  config = _CONFIG.value
  if 'steps_per_dispatch' not in config:
    config.steps_per_dispatch = 1
  import jax
  import numpy as np
  import results_report  # benchmarks/: the CPU's name, as the results tables give it
  from cgan_jax import models
  runners, meta = {}, {}  # name -> run; name -> (images per step, batch, XLA FLOPs)
  for c in _variants(config):
    task, images, labels = _load(c)
    jax_runs, flops = _jax_runners(c, task, images, labels)
    b = c.batch_size * c.get('n_critic', 1)  # images per step
    for name, run in jax_runs.items():
      key = f'{name} {c.dtype} b{c.batch_size}'
      runners[key], meta[key] = run, (b, c.batch_size, flops, len(images) // b)
    if c.dtype == _DTYPES.value[0]:
      for name, run in _torch_runners(c, images, labels).items():
        key = f'{name} float32 b{c.batch_size}'
        runners[key], meta[key] = run, (b, c.batch_size, None, len(images) // b)
  n = _STEPS.value
  for name, run in runners.items():  # warm-up: compilation (one for every chunk length), caches
    print(f'warm-up {name}: {run(0, 2):.1f} s', flush=True)
  times = {name: [] for name in runners}
  loads = []
  for r in range(_REPEATS.value):
    loads.append(os.getloadavg()[0])
    for name, run in runners.items():  # interleaved: every framework sees the same load
      times[name].append(run(n * (r + 1), n) / n)
      print(f'repeat {r}: {name} {times[name][-1]:.3f} s/step (load {os.getloadavg()[0]:.1f})',
            flush=True)
  loads.append(os.getloadavg()[0])
  rows = []
  for name, ts in times.items():
    b, batch, flops, spe = meta[name]
    s = float(np.median(ts))
    gflops = flops / s / 1e9 if flops else None
    rows.append(dict(name=name, batch_size=batch, s_per_step=s, img_per_s=b / s,
                     s_per_epoch=s * spe, gflop_per_s=gflops,
                     xla_gflop_per_step=flops / 1e9 if flops else None,
                     peak_share=gflops / _PEAK.value if gflops and _PEAK.value else None,
                     repeats=[round(t, 4) for t in ts]))
  for row in rows:  # against the eager peer at the same batch size
    ref = times.get(f"torch/eager float32 b{row['batch_size']}")
    row['vs_torch'] = (float(np.median(ref)) / row['s_per_step']) if ref else None
  result = dict(
      config={'model': models.label(config),
              **{k: config[k] for k in ('dataset', 'batch_size', 'steps_per_dispatch',
                                        'num_devices')}},
      machine=dict(cpu=results_report.cpu_model(), cores=os.cpu_count(),
                   device=jax.devices()[0].device_kind, num_devices=jax.device_count(),
                   jax=jax.__version__, torch=_torch_version(),
                   xla_flags=os.environ.get('XLA_FLAGS', '')),
      date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      load_avg_1min=dict(start=loads[0], end=loads[-1], max=max(loads)),
      steps_timed=n, repeats=_REPEATS.value, peak_gflops=_PEAK.value or None,
      peak_host_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      peak_device_bytes=_device_memory(), results=rows)
  _print(result)
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump(result, f, indent=1)


def _torch_version() -> str | None:
  mod = sys.modules.get('torch')
  return mod.__version__ if mod else None


def _print(r: dict) -> None:
  m = r['machine']
  print(f"\n{m['cpu']}; {m['device']} x{m['num_devices']}, {m['cores']} cores; jax {m['jax']}, "
        f"torch {m['torch']}; {r['config']['model']}; {r['date']}; XLA_FLAGS="
        f"'{m['xla_flags']}'; load avg {r['load_avg_1min']['start']:.2f}.."
        f"{r['load_avg_1min']['end']:.2f} (max {r['load_avg_1min']['max']:.2f})")
  print(f"{r['steps_timed']} steps x {r['repeats']} repeats (median); peak host RSS "
        f"{r['peak_host_rss_mib']:.0f} MiB (whole process); peak device memory "
        f"{r['peak_device_bytes'] if r['peak_device_bytes'] is not None else 'n/a (not reported)'}")
  print('| run | s/step | images/s | s/epoch | XLA GFLOP/step | GFLOP/s | of peak | vs PyTorch |')
  print('|---|---|---|---|---|---|---|---|')
  for row in r['results']:
    gf = f"{row['gflop_per_s']:.1f}" if row['gflop_per_s'] else '-'
    xf = f"{row['xla_gflop_per_step']:.2f}" if row['xla_gflop_per_step'] else '-'
    pk = f"{100 * row['peak_share']:.0f} %" if row['peak_share'] else '-'
    vs = f"{row['vs_torch']:.2f}x" if row['vs_torch'] else '-'
    print(f"| {row['name']} | {row['s_per_step']:.4g} | {row['img_per_s']:.1f} | "
          f"{row['s_per_epoch']:.0f} | {xf} | {gf} | {pk} | {vs} |")


if __name__ == '__main__':
  app.run(main)
