"""summary.md of the accelerator check, rendered from its check.json (accelerator_check.py)."""

# Vendor datasheet peaks of one H100/H200 SXM (dense), GFLOP/s: leads, not measurements.
PEAK_GFLOPS = {'float32': 67_000, 'float32 (TF32 tensor cores)': 495_000, 'bfloat16': 990_000}


def _f(x, fmt='.3g') -> str:
  return '-' if x is None else format(x, fmt)


def _stage_table(stages: dict) -> list[str]:
  lines = ['| stage | status | exit | seconds | limit s | XLA compiles (≥ 1 s) | compile s |',
           '|---|---|---|---:|---:|---:|---:|']
  for name, s in stages.items():
    lines.append(f"| {name} | {s.get('status')} | {s.get('rc', '-')} | {s.get('seconds', '-')} | "
                 f"{s.get('limit_s', '-')} | {s.get('xla_compiles', '-')} "
                 f"({s.get('xla_compiles_over_1s', '-')}) | {s.get('xla_compile_s', '-')} |")
  return lines


def _preflight(r: dict) -> list[str]:
  if not r:
    return []
  v = r.get('versions', {})
  return ['', f"Device: {r.get('device_kind')} ({r.get('platform')}); nvidia-smi: "
          f"{r.get('nvidia_smi')}", 'Versions: ' + ', '.join(f'{k} {x}' for k, x in v.items()),
          f"First seed step (compile included): {_f(r.get('first_step_s'), '.1f')} s; imports "
          f"failed: {r.get('imports_failed') or 'none'}; TensorFlow loaded: "
          f"{r.get('tensorflow_loaded')}"]


def _correctness(r: dict) -> list[str]:
  if not r.get('checks'):
    return []
  lines = ['', f"## Correctness ({r.get('steps')} steps of the seed CGAN, batch 64; reference: "
           f"{r.get('reference')})", '',
           '| check | ok | loss max rel. diff | G image max abs. diff | tolerances | s |',
           '|---|---|---:|---:|---|---:|']
  for name, c in r['checks'].items():
    if 'error' in c:
      lines.append(f"| {name} | error | | | | {c.get('seconds')} |")
      continue
    t = c.get('tolerances', {})
    lines.append(f"| {name} | {c.get('ok')} | {_f(c.get('loss_max_rel_diff'))} | "
                 f"{_f(c.get('image_max_abs_diff'))} | {t.get('loss_rtol')} / "
                 f"{t.get('image_atol')} | {c.get('seconds')} |")
  return lines


def _speed(name: str, r: dict) -> list[str]:
  rows = r.get('results') or []
  if not rows:
    return []
  m = r.get('machine', {})
  lines = ['', f"### {name}: {r.get('config', {}).get('model')} on {m.get('device')} "
           f"(jax {m.get('jax')}, torch {m.get('torch')}; {r.get('date')}; "
           f"{'complete' if r.get('complete', True) else 'partial'})", '',
           '| run | s/step | images/s | s/epoch | compile s | GFLOP/s | of dtype peak | vs PyTorch eager |',
           '|---|---:|---:|---:|---:|---:|---:|---:|']
  for row in rows:
    dtype = 'bfloat16' if 'bfloat16' in row['name'] else 'float32'
    gf = row.get('gflop_per_s')
    share = f'{100 * gf / PEAK_GFLOPS[dtype]:.1f} %' if gf and m.get('device') != 'cpu' else '-'
    vs = row.get('vs_torch')
    lines.append(f"| {row['name']} | {_f(row.get('s_per_step'), '.4g')} | "
                 f"{_f(row.get('img_per_s'), '.0f')} | {_f(row.get('s_per_epoch'), '.3g')} | "
                 f"{_f(row.get('compile_s'), '.1f')} | {_f(gf, '.0f')} | {share} | "
                 f"{_f(vs, '.2f') + 'x' if vs else '-'} |")
  return lines


def _learning(name: str, rows: list) -> list[str]:
  rows = [r for r in rows if r.get('epoch')]
  if not rows:
    return []
  lines = ['', f'### {name}', '', '| recipe | epoch | FID | KID | IS | s/epoch | samples | hardware |',
           '|---|---:|---:|---:|---:|---:|---:|---|']
  for r in rows:
    overrides = [o for o in r.get('overrides') or [] if not o.startswith(('data_dir=',
                                                                          'allow_download='))]
    lines.append(f"| {r.get('recipe')} {' '.join(overrides)} | {r.get('epoch')} | "
                 f"{_f(r.get('fid'))} | {_f(r.get('kid'))} | {_f(r.get('is'))} | "
                 f"{_f(r.get('seconds_per_epoch'))} | {r.get('samples')} | {r.get('hardware')} |")
  return lines


def render(data: dict) -> str:
  stages = data.get('stages', {})
  lines = [f"# Accelerator check{' (QUICK dry run)' if data.get('quick') else ''}", '',
           f"{data.get('date')}; {data.get('elapsed_s')} s of a {data.get('budget_s')} s budget.",
           '', *_stage_table(stages)]
  res = lambda s: stages.get(s, {}).get('results', {})
  lines += _preflight(res('preflight').get('report', {}))
  lines += _correctness(res('correctness').get('report', {}))
  speed = [(f'{s}/{k}', v) for s in ('speed', 'more') for k, v in res(s).items()
           if isinstance(v, dict) and 'results' in v]
  if speed:
    lines += ['', '## Speed (medians; peaks are datasheet leads: fp32 67, TF32 495, bf16 990 '
              'TFLOP/s)']
    for name, r in speed:
      lines += _speed(name, r)
  learning = [(f'{s}/{k}', v) for s in ('learning', 'more') for k, v in res(s).items()
              if isinstance(v, list)]
  if learning:
    lines += ['', '## Learning (results.py: classifier-feature FID/KID, as the CPU rows)']
    for name, rows in learning:
      lines += _learning(name, rows)
  for name, s in stages.items():
    bad = [c for c in s.get('commands', []) if c.get('rc') not in (0, None)]
    if bad:
      lines += ['', f'{name}: ' + '; '.join(f"`{c['cmd'][:120]}` -> {c['rc']}" for c in bad)]
  return '\n'.join(lines) + '\n'
