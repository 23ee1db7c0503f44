"""What a device call carries: the working tree git would send plus the carried folders.

  python benchmarks/bundle_size.py .whl data     # after `make gpu-bundle`

Prints the total and exits 1 when it is over the 64 MiB a call may carry.
"""

import os
import subprocess
import sys

LIMIT_BYTES = 64 << 20


def main(carried: list[str]) -> int:
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                          cwd=root, capture_output=True, check=True).stdout.decode().split('\0')
  tree = sum(os.path.getsize(os.path.join(root, f)) for f in listed
             if f and os.path.isfile(os.path.join(root, f)))
  extra = sum(os.path.getsize(os.path.join(d, f)) for c in carried
              for d, _, files in os.walk(os.path.join(root, c)) for f in files)
  total = tree + extra
  print(f'bundle: working tree {tree / 2**20:.1f} MiB + {" ".join(carried)} '
        f'{extra / 2**20:.1f} MiB = {total / 2**20:.1f} MiB of {LIMIT_BYTES >> 20} MiB')
  if total > LIMIT_BYTES:
    print('error: the bundle is over what one device call may carry', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
