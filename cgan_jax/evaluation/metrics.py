"""GAN metrics as pure functions of classifier features and class probabilities (numpy, float64).

FID (Heusel et al. 2017), Inception/classifier Score (Salimans et al. 2016), KID (Binkowski et
al. 2018), k-NN precision/recall (Kynkaanniemi et al. 2019), intra-class FID and conditional
accuracy for class-conditional generators.
"""

import numpy as np
import scipy.linalg
import scipy.special


def mean_cov(features_ND: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean (D,) and unbiased covariance (D, D) in float64."""
  x = np.asarray(features_ND, np.float64)
  return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray, eps: float = 1e-6) -> float:
  """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)): the W2 distance of two Gaussians."""
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
  if not np.all(np.isfinite(covmean)):  # a singular product: regularise both factors slightly
    offset = eps * np.eye(len(sigma1))
    covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  # S1 S2 is similar to the PSD S1^(1/2) S2 S1^(1/2): any imaginary part is round-off.
  covmean = np.real(covmean)
  diff = mu1 - mu2
  value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
  return float(max(value, 0.0))


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """Frechet distance between the Gaussians fitted to two feature sets."""
  return frechet_distance(*mean_cov(features_a), *mean_cov(features_b))


def inception_score(probs_NK: np.ndarray, splits: int = 10) -> tuple[float, float]:
  """exp(E_x KL(p(y|x) || p(y))) per split of the samples; (mean, std) over the splits."""
  p = np.asarray(probs_NK, np.float64)
  scores = []
  for part in np.array_split(p, splits):
    p_y = part.mean(0, keepdims=True)
    kl = (scipy.special.xlogy(part, part) - scipy.special.xlogy(part, p_y)).sum(1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))


def _poly_kernel(a_MD: np.ndarray, b_MD: np.ndarray) -> np.ndarray:
  """k(x, y) = (x.y / d + 1)^3."""
  k = a_MD @ b_MD.T
  k /= a_MD.shape[1]
  k += 1.0
  return k * k * k  # far cheaper than ** 3


def mmd2_unbiased(a_MD: np.ndarray, b_MD: np.ndarray) -> float:
  """Unbiased MMD^2 of two equal-size samples under the cubic polynomial kernel."""
  m = len(a_MD)
  k_aa, k_bb, k_ab = _poly_kernel(a_MD, a_MD), _poly_kernel(b_MD, b_MD), _poly_kernel(a_MD, b_MD)
  same = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
  return float(same - 2.0 * k_ab.mean())


def kid(features_a: np.ndarray, features_b: np.ndarray, num_subsets: int = 100,
        subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
  """Kernel Inception Distance: (mean, std) of MMD^2 over random subsets of both sets."""
  a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
  m = min(subset_size, len(a), len(b))
  rng = np.random.default_rng(seed)
  values = [mmd2_unbiased(a[rng.choice(len(a), m, replace=False)],
                          b[rng.choice(len(b), m, replace=False)]) for _ in range(num_subsets)]
  return float(np.mean(values)), float(np.std(values))


def _sq_distances(a_MD: np.ndarray, b_ND: np.ndarray) -> np.ndarray:
  """Squared Euclidean distances (M, N), clipped at 0 against round-off."""
  d2 = (a_MD * a_MD).sum(1)[:, None] + (b_ND * b_ND).sum(1)[None, :] - 2.0 * a_MD @ b_ND.T
  return np.maximum(d2, 0.0)


def knn_radii(x_ND: np.ndarray, k: int = 3, block: int = 1000) -> np.ndarray:
  """Squared distance from each point to its k-th nearest other point of the same set."""
  x = np.asarray(x_ND, np.float64)
  out = np.empty(len(x))
  for i in range(0, len(x), block):
    d2 = _sq_distances(x[i:i + block], x)
    out[i:i + block] = np.partition(d2, k, axis=1)[:, k]  # column 0 is the point itself
  return out


def precision_recall(real_ND: np.ndarray, fake_MD: np.ndarray, k: int = 3,
                     real_radii_N: np.ndarray | None = None,
                     block: int = 1000) -> tuple[float, float]:
  """Share of fakes inside some real k-NN ball (precision); of reals inside a fake one (recall).

  `real_radii_N` (knn_radii(real_ND, k)) may be passed in to score many fake sets against one real.
  """
  real, fake = np.asarray(real_ND, np.float64), np.asarray(fake_MD, np.float64)
  if real_radii_N is None:
    real_radii_N = knn_radii(real, k, block)
  fake_radii_M = knn_radii(fake, k, block)
  precise, recalled = np.zeros(len(fake), bool), np.zeros(len(real), bool)
  for i in range(0, len(fake), block):  # one pass over the fake x real distances serves both
    d2 = _sq_distances(fake[i:i + block], real)
    precise[i:i + block] = (d2 <= real_radii_N[None, :]).any(1)
    recalled |= (d2 <= fake_radii_M[i:i + block, None]).any(0)
  return float(precise.mean()), float(recalled.mean())


def conditional_accuracy(probs_NK: np.ndarray, labels_N: np.ndarray) -> float:
  """Share of samples G(z, y) that the classifier assigns to y."""
  return float(np.mean(np.argmax(probs_NK, -1) == np.asarray(labels_N)))


def intra_fid(features_ND: np.ndarray, labels_N: np.ndarray,
              class_means_KD: np.ndarray, class_covs_KDD: np.ndarray) -> float:
  """Mean over classes c of FID(samples labelled c, real class c's Gaussian)."""
  labels_N = np.asarray(labels_N)
  return float(np.mean([
      frechet_distance(*mean_cov(features_ND[labels_N == c]), class_means_KD[c], class_covs_KDD[c])
      for c in range(len(class_means_KD))]))
