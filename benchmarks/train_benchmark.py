"""Training throughput of a config: images/s, s/epoch, memory, GFLOP/s; PyTorch side by side.

  python benchmarks/train_benchmark.py --config=configs/cgan_fashion_mnist.py \
      [--steps=32] [--repeats=3] [--pipelines=device:1,device:100,device:epoch,numpy,trainer] \
      [--dtypes=float32,bfloat16] [--batch_sizes=64,256,1024] \
      [--torch=eager,compile,eager_tf32,autocast_bf16] [--peak_gflops=330] \
      [--time_budget_s=170] [--json=/tmp/bench.json]

Each input pipeline is timed as the trainer runs it: 'device' (the split on device, up to
config.steps_per_dispatch steps per dispatch), 'numpy' or 'tf.data' (a host batch per step),
'auto' (the one the trainer picks here). 'trainer' is the trainer's own loop, end to end
(benchmarks/trainer_timing.py: feed, dispatch window, metric flushes, checkpoints and grids
at the config's cadences, e.g. --config.log_every_steps=10), against the bare step of its
feed. After a warm-up (2 steps, compilation: its seconds are reported), `--steps` steps are
timed `--repeats` times, every runner in turn so that all see the same load; the median is
reported. The PyTorch peer (benchmarks/torch_cgan.py, in the --torch modes) runs in the same
process when torch is importable. Each row records its precision settings. FLOPs per step:
XLA's cost analysis of the host runner's own compiled step (no extra compile; without one,
of the lowered step). Real Fashion-MNIST (or the config's dataset) is the input. The JSON is
rewritten atomically after the warm-ups and each timed run (`complete` false until the
end); --time_budget_s starts no repeat that the last one says would not fit.
"""

import json
import os
import resource
import sys
import time
import unittest.mock

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
                               "steps per dispatch; 0: the trainer's per-platform choice), "
                               "'device:K' (K steps), 'device:epoch', 'numpy', 'tf.data', "
                               "'auto' (the feed the trainer picks for the config here), "
                               "'trainer' (the trainer's loop end to end).")
_TORCH = flags.DEFINE_list('torch', ['auto'],
                           "PyTorch peer modes to time (torch_cgan.MODES): 'eager', 'compile' "
                           "(torch.compile), 'eager_tf32', 'autocast_bf16'; 'auto' (= eager, "
                           'when torch is importable and the config has a peer: the infoGAN '
                           "CGAN or the MLP CGAN), or 'off'.")
_DTYPES = flags.DEFINE_list('dtypes', ['float32'], "JAX compute dtypes: 'float32', 'bfloat16'.")
_BATCHES = flags.DEFINE_list('batch_sizes', [], 'Global batch sizes to time (default: the '
                             "config's).")
_PEAK = flags.DEFINE_float('peak_gflops', 0.0, "The machine's peak GFLOP/s (fp32), to print "
                           'the share of it the step reaches (0: not printed).')
_ABLATE = flags.DEFINE_bool('ablate_conv_transpose', False,
                            "Also time jax/device with the generator's fast (tap-wise kernel "
                            'gradient) layer swapped back to nn.ConvTranspose '
                            '(docs/perf_notes.md).')
_JSON = flags.DEFINE_string('json', None, 'Also write the results here as JSON (rewritten '
                            'after the warm-ups and each timed run).')
_BUDGET = flags.DEFINE_float('time_budget_s', 0.0, 'Seconds (from the start) after which no '
                             'repeat is started that the last one says would not fit (0: none).')
WARMUP_STEPS = 2


def _load(config):
  """The task of the config (any model: noise-to-image or image-to-image) and its train data."""
  from cgan_jax import parallel, tasks
  # As the trainer builds it: BatchNorm without a cross-device axis on one device.
  task = tasks.build(config, parallel.batch_norm_axis(parallel.make_mesh(config.num_devices)))
  images, labels = task.load('train')
  return task, images, labels


def _jax_runners(config, task, images, labels, closers: list):
  """{name: run(first_step, n) -> seconds}, and a thunk: (XLA's FLOPs of one step, source).

  The thunk, called after the warm-ups, reads the cost analysis of the first host runner's
  own executable (jit's cache: no compilation), or, without one, of the lowered step (no
  compilation either; XLA's count before optimisation, within ~1 %).
  """
  import jax
  from cgan_jax import device_input, input_pipeline, parallel
  import trainer_timing  # benchmarks/

  mesh = parallel.make_mesh(config.num_devices)
  platform, micro = mesh.devices.flat[0].platform, task.micro_steps
  fresh = lambda: jax.device_put(task.init_state(jax.random.PRNGKey(config.seed)),
                                 parallel.replicated(mesh))
  spe = input_pipeline.steps_per_epoch(len(images), config.batch_size * micro)
  executable = []  # (jitted step, its (state, batch) shapes): the first host runner's

  def flops() -> tuple[float, str]:
    if executable:
      fn, args = executable[0]
      cost, source = fn.lower(*args).compile().cost_analysis(), 'compiled'
    else:
      first_batch = next(input_pipeline.batches(images, labels, global_batch=config.batch_size,
                                                seed=config.seed, epoch=0, micro_steps=micro,
                                                pipeline='numpy'))
      cost = parallel.data_parallel(task.train_step, mesh).lower(
          task.abstract_state(parallel.replicated(mesh)),
          parallel.global_batch(first_batch, mesh)).cost_analysis()
      source = 'lowered'
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get('flops', float('nan'))), source

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
        batch = parallel.global_batch(batch, mesh)
        if not executable and train_step is task.train_step:
          spec = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
          executable.append((step_fn, jax.tree.map(spec, (state, batch))))
        state, metrics = step_fn(state, batch)
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
    if pipeline == 'trainer':
      run = trainer_timing.TrainerRun(config, spe, WARMUP_STEPS + _STEPS.value * _REPEATS.value)
      closers.append(run.close)
      return 'jax/trainer', run  # its feed: the row's trainer.pipeline
    if pipeline in ('auto', 'device'):  # as the trainer resolves config.pipeline / 'device'
      p, k = device_input.feed_choice(config.pipeline if pipeline == 'auto' else pipeline,
                                      config.steps_per_dispatch, platform, spe)
      pipeline = f'device:{k}' if p == 'device' else p
    if not pipeline.startswith('device'):
      return f'jax/{pipeline}', host(pipeline, train_step)
    k = pipeline.partition(':')[2]
    k = spe if k == 'epoch' else int(k)
    return f'jax/device:{k}', device(k, train_step)

  runners = {}
  for p in _PIPELINES.value:  # 'auto' may be another one's feed: timed once
    name, run = make(p)
    runners.setdefault(name, run)
  bare = [p for p in _PIPELINES.value if p != 'trainer']
  if _ABLATE.value and bare:
    from cgan_jax.models import infogan
    # A fresh function: its own jit cache entry, traced with nn.ConvTranspose.
    name, xla = make(bare[0], lambda state, batch: task.train_step(state, batch))

    def run_xla(first: int, n: int) -> float:
      with unittest.mock.patch.object(infogan, '_FastConvT', infogan._ConvT):
        return xla(first, n)  # traced (once) with nn.ConvTranspose in the generator
    runners[f'{name}, nn.ConvTranspose'] = run_xla
  return runners, flops


def _torch_runners(config, images, labels) -> dict:
  """{'torch/<mode>': torch_cgan.Trainer} as asked by --torch, where a peer exists."""
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
  unknown = sorted(set(modes) - set(torch_cgan.MODES))
  if unknown:
    raise app.UsageError(f'--torch: unknown mode(s) {unknown}; known: {list(torch_cgan.MODES)}')
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  return {f'torch/{mode}': torch_cgan.Trainer(images[..., 0], labels, config.batch_size,
                                              config.seed, model=model, device=device,
                                              mode=mode)
          for mode in dict.fromkeys(modes)}


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
  t0 = time.perf_counter()
  config = _CONFIG.value
  if 'steps_per_dispatch' not in config:
    config.steps_per_dispatch = 1
  import jax
  from cgan_jax import cli
  cli.quiet_logs()  # as train.py: the trainer row logs what a user's run logs
  runners, meta, flops_of, closers = {}, {}, {}, []  # meta: name -> what its row needs
  try:
    for c in _variants(config):
      task, images, labels = _load(c)
      jax_runs, flops_of[(c.dtype, c.batch_size)] = _jax_runners(c, task, images, labels,
                                                                 closers)
      b = c.batch_size * c.get('n_critic', 1)  # images per step
      common = dict(images=b, batch=c.batch_size, spe=len(images) // b)
      precision = dict(dtype=c.dtype,
                       jax_default_matmul_precision=jax.config.jax_default_matmul_precision)
      for name, run in jax_runs.items():
        runners[key := f'{name} {c.dtype} b{c.batch_size}'] = run
        meta[key] = dict(common, variant=(c.dtype, c.batch_size), precision=precision,
                         trainer=run if hasattr(run, 'info') else None)
      if c.dtype == _DTYPES.value[0]:
        for name, peer in _torch_runners(c, images, labels).items():
          runners[key := f'{name} float32 b{c.batch_size}'] = peer.time_steps
          meta[key] = dict(common, variant=None, precision=peer.precision(), trainer=None)
    _measure(config, runners, meta, flops_of, t0)
  finally:
    for close in closers:
      close()


def _measure(config, runners, meta, flops_of, t0: float) -> None:
  """Warm-ups, then the interleaved repeats; the JSON after each warm-up and timed run."""
  n, budget = _STEPS.value, _BUDGET.value
  warm, times, loads, flops = {}, {name: [] for name in runners}, [os.getloadavg()[0]], {}

  def write(done: int, complete: bool = False) -> dict:
    result = _result(config, meta, warm, times, flops, loads, done, complete,
                     time.perf_counter() - t0)
    _write_json(result)
    return result

  for name, run in runners.items():  # warm-up: compilation (one for every chunk length), caches
    if budget and time.perf_counter() - t0 > budget:
      print(f'--time_budget_s={budget:g} spent: {name} and the runners after it are not '
            'timed', flush=True)
      break
    warm[name] = run(0, WARMUP_STEPS)
    print(f'warm-up {name}: {warm[name]:.1f} s', flush=True)
    write(0)
  runners = {name: run for name, run in runners.items() if name in warm}
  for variant, thunk in flops_of.items():
    t = time.perf_counter()
    flops[variant] = thunk()
    print(f'XLA cost analysis {variant}: {flops[variant][0] / 1e9:.2f} GFLOP/step '
          f'({flops[variant][1]}, {time.perf_counter() - t:.1f} s)', flush=True)
  write(0)
  done, last_repeat = 0, 0.0
  for r in range(_REPEATS.value):
    elapsed = time.perf_counter() - t0
    if budget and elapsed + last_repeat > budget:
      print(f'--time_budget_s={budget:g}: repeat {r} would end near '
            f'{elapsed + last_repeat:.0f} s; stopping', flush=True)
      break
    t = time.perf_counter()
    loads.append(os.getloadavg()[0])
    for name, run in runners.items():  # interleaved: every framework sees the same load
      times[name].append(run(n * (r + 1), n) / n)
      print(f'repeat {r}: {name} {times[name][-1]:.3f} s/step (load {os.getloadavg()[0]:.1f})',
            flush=True)
      write(done)
    done, last_repeat = r + 1, time.perf_counter() - t
  loads.append(os.getloadavg()[0])
  print(f'{done} of {_REPEATS.value} repeats done in {time.perf_counter() - t0:.0f} s'
        + (f' (time budget {budget:g} s)' if budget else ''), flush=True)
  _print(write(done, complete=True))


def _write_json(result: dict) -> None:
  """--json, replaced atomically (a reader or a kill never sees half a file)."""
  if not _JSON.value:
    return
  with open(f'{_JSON.value}.tmp{os.getpid()}', 'w') as f:
    json.dump(result, f, indent=1)
  os.replace(f.name, _JSON.value)


def _rows(meta, warm, times, flops) -> list[dict]:
  import numpy as np
  rows, med = [], {name: float(np.median(ts)) if ts else None for name, ts in times.items()}
  for name, ts in times.items():
    m, s = meta[name], med[name]
    f, source = flops.get(m['variant'], (None, None))
    gflops = f / s / 1e9 if f and s else None
    rows.append(dict(
        name=name, batch_size=m['batch'], s_per_step=s, img_per_s=m['images'] / s if s else None,
        s_per_epoch=s * m['spe'] if s else None, gflop_per_s=gflops,
        xla_gflop_per_step=f / 1e9 if f else None, flops_source=source,
        peak_share=gflops / _PEAK.value if gflops and _PEAK.value else None,
        repeats=[round(t, 4) for t in ts], warmup_s=warm.get(name),  # compilation included
        compile_s=max(warm[name] - WARMUP_STEPS * s, 0) if s else None,
        precision=m['precision']))
    ref = med.get(f"torch/eager float32 b{m['batch']}")  # against the eager peer
    rows[-1]['vs_torch'] = ref / s if ref and s else None
    if m['trainer']:
      rows[-1]['trainer'] = _trainer_info(name, m['trainer'], times, med)
  return rows


def _trainer_info(name: str, run, times, med) -> dict:
  """The trainer row's loop, the events in its timed steps, and its cost over the bare step
  of its feed (same dtype and batch): from the medians, and per repeat (each trainer run
  against the bare run of the same repeat: robust to load that comes and goes)."""
  import numpy as np
  bare = f'jax/{run.feed}{name[name.index(" "):]}'
  paired = [round(t / b - 1, 4) for t, b in zip(times[name], times.get(bare, []))]
  return dict(run.info(), bare_row=bare if bare in med else None,
              overhead_vs_bare=med[name] / med[bare] - 1 if med.get(bare) and med[name]
              else None, overhead_paired=paired,
              overhead_paired_median=float(np.median(paired)) if paired else None)


def _result(config, meta, warm, times, flops, loads, done, complete, elapsed) -> dict:
  import jax
  import results_report  # benchmarks/: the CPU's name, as the results tables give it
  from cgan_jax import models
  return dict(
      complete=complete, repeats_done=done, elapsed_s=round(elapsed, 1),
      time_budget_s=_BUDGET.value or None,
      config={'model': models.label(config),
              **{k: config[k] for k in ('dataset', 'batch_size', 'steps_per_dispatch',
                                        'num_devices')}},
      machine=dict(cpu=results_report.cpu_model(), cores=os.cpu_count(),
                   device=jax.devices()[0].device_kind, num_devices=jax.device_count(),
                   jax=jax.__version__, torch=_torch_version(),
                   xla_flags=os.environ.get('XLA_FLAGS', '')),
      date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      load_avg_1min=dict(start=loads[0], end=loads[-1], max=max(loads), samples=loads),
      steps_timed=_STEPS.value, warmup_steps=WARMUP_STEPS, repeats=_REPEATS.value,
      peak_gflops=_PEAK.value or None,
      peak_host_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      peak_device_bytes=_device_memory(), results=_rows(meta, warm, times, flops))


def _torch_version() -> str | None:
  mod = sys.modules.get('torch')
  return mod.__version__ if mod else None


def _print(r: dict) -> None:
  m = r['machine']
  print(f"\n{m['cpu']}; {m['device']} x{m['num_devices']}, {m['cores']} cores; jax {m['jax']}, "
        f"torch {m['torch']}; {r['config']['model']}; {r['date']}; XLA_FLAGS="
        f"'{m['xla_flags']}'; load avg {r['load_avg_1min']['start']:.2f}.."
        f"{r['load_avg_1min']['end']:.2f} (max {r['load_avg_1min']['max']:.2f})")
  print(f"{r['steps_timed']} steps x {r['repeats_done']} repeats (median); peak host RSS "
        f"{r['peak_host_rss_mib']:.0f} MiB (whole process); peak device memory "
        f"{r['peak_device_bytes'] if r['peak_device_bytes'] is not None else 'n/a (not reported)'}")
  fmt = lambda v, f, scale=1, unit='': '-' if v is None else f'{v * scale:{f}}{unit}'
  print('| run | s/step | images/s | s/epoch | XLA GFLOP/step | GFLOP/s | of peak | vs PyTorch '
        '| warm-up s |')
  print('|---|---|---|---|---|---|---|---|---|')
  for row in r['results']:
    print(f"| {row['name']} | {fmt(row['s_per_step'], '.4g')} | {fmt(row['img_per_s'], '.1f')} "
          f"| {fmt(row['s_per_epoch'], '.0f')} | {fmt(row['xla_gflop_per_step'], '.2f')} | "
          f"{fmt(row['gflop_per_s'], '.1f')} | {fmt(row['peak_share'], '.0f', 100, ' %')} | "
          f"{fmt(row['vs_torch'], '.2f', 1, 'x')} | {fmt(row['warmup_s'], '.1f')} |")
  for row in r['results']:
    t = row.get('trainer')
    if t and t['overhead_vs_bare'] is not None:
      p = t['overhead_paired']
      print(f"{row['name']} ({t['feed']} feed): {100 * t['overhead_paired_median']:+.1f} % over "
            f"{t['bare_row']} (median of per-repeat ratios, {100 * min(p):+.1f}.."
            f"{100 * max(p):+.1f} %; of medians {100 * t['overhead_vs_bare']:+.1f} %); timed "
            f"steps held {t['events_timed']}")


if __name__ == '__main__':
  # ml_collections reads sys.argv and refuses a --config.FIELD before --config=FILE: any
  # order is accepted here (a stable sort puts --config=FILE first, the rest as given).
  sys.argv[1:] = sorted(sys.argv[1:], key=lambda arg: not arg.startswith('--config='))
  app.run(main)
