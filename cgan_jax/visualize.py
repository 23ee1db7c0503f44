"""Sample grids: fixed noise, one row per class (conditional) or a plain grid."""

import numpy as np
from PIL import Image


def grid(images_NHWC: np.ndarray, rows: int, pixel_range: tuple[float, float] = (0.0, 1.0),
         pad: int = 2) -> np.ndarray:
  """Tiles N images into a uint8 (H, W, C) grid with `rows` rows and a white border."""
  lo, hi = pixel_range
  x = np.clip((np.asarray(images_NHWC, np.float32) - lo) / (hi - lo), 0.0, 1.0)
  n, h, w, c = x.shape
  cols = -(-n // rows)
  out = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.float32)
  for i in range(n):
    r, k = divmod(i, cols)
    out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = x[i]
  return np.round(out * 255).astype(np.uint8)


def upscale(grid_HWC: np.ndarray, factor: int) -> np.ndarray:
  """Each pixel becomes a factor x factor block (nearest neighbour: no blur)."""
  return np.repeat(np.repeat(grid_HWC, factor, axis=0), factor, axis=1)


def save_png(grid_HWC: np.ndarray, path: str) -> None:
  """Writes a uint8 grid (grayscale or RGB) as PNG."""
  img = grid_HWC[..., 0] if grid_HWC.shape[-1] == 1 else grid_HWC
  Image.fromarray(img).save(path)
