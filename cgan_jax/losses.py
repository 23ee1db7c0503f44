"""GAN objectives as pure functions of discriminator outputs.

A `LossPair` is the adversarial objective: d(real_logits, fake_logits) and g(fake_logits),
each a scalar mean over the (local) batch; d_real + d_fake are d's two halves, for a D that
takes one optimiser step on the real batch and another on the fakes (Keras's ACGAN); `score` maps a logit to what the logs call D(x)
(a probability for the cross-entropy losses, the critic value otherwise). The gradient
penalty and the auxiliary-classifier terms are added on top by the step when the GAN asks.
"""

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax


class LossPair(NamedTuple):
  """d(real_logits, fake_logits) -> D's loss;  g(fake_logits) -> G's loss;
  d(r, f) = d_real(r) + d_fake(f) where the halves are given (None: not separable)."""
  d: Callable[[jax.Array, jax.Array], jax.Array]
  g: Callable[[jax.Array], jax.Array]
  score: Callable[[jax.Array], jax.Array] = jax.nn.sigmoid
  d_real: Optional[Callable[[jax.Array], jax.Array]] = None
  d_fake: Optional[Callable[[jax.Array], jax.Array]] = None


def d_cross_entropy(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  # L_D = -E[log D(x)] - E[log(1 - D(G(z)))],  with D = sigmoid(logit)
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def g_non_saturating(fake_logits: jax.Array) -> jax.Array:
  # L_G = -E[log D(G(z))]
  return jnp.mean(jax.nn.softplus(-fake_logits))


def g_minimax(fake_logits: jax.Array) -> jax.Array:
  # L_G = E[log(1 - D(G(z)))]   (the original, saturating objective)
  return -jnp.mean(jax.nn.softplus(fake_logits))


def d_wasserstein(real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
  # L_D = E[f(G(z))] - E[f(x)]   (critic f, no sigmoid, no log)
  return jnp.mean(fake_scores) - jnp.mean(real_scores)


def g_wasserstein(fake_scores: jax.Array) -> jax.Array:
  # L_G = -E[f(G(z))]
  return -jnp.mean(fake_scores)


def d_hinge(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  # L_D = E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]
  return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def d_least_squares(real_out: jax.Array, fake_out: jax.Array) -> jax.Array:
  # L_D = 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]   (LSGAN, a = 0, b = c = 1)
  return 0.5 * jnp.mean((real_out - 1.0) ** 2) + 0.5 * jnp.mean(fake_out ** 2)


def g_least_squares(fake_out: jax.Array) -> jax.Array:
  # L_G = 1/2 E[(D(G(z)) - 1)^2]
  return 0.5 * jnp.mean((fake_out - 1.0) ** 2)


def _identity(x: jax.Array) -> jax.Array:
  return x


# The halves of each D loss (d(r, f) = real(r) + fake(f)), for a D stepped on each separately.
def _ce_real(r): return jnp.mean(jax.nn.softplus(-r))      # -E[log D(x)]
def _ce_fake(f): return jnp.mean(jax.nn.softplus(f))       # -E[log(1 - D(G(z)))]
def _w_real(r): return -jnp.mean(r)                        # -E[f(x)]
def _w_fake(f): return jnp.mean(f)                         # E[f(G(z))]
def _hinge_real(r): return jnp.mean(jax.nn.relu(1.0 - r))  # E[max(0, 1 - D(x))]
def _hinge_fake(f): return jnp.mean(jax.nn.relu(1.0 + f))  # E[max(0, 1 + D(G(z)))]
def _ls_real(r): return 0.5 * jnp.mean((r - 1.0) ** 2)     # 1/2 E[(D(x) - 1)^2]
def _ls_fake(f): return 0.5 * jnp.mean(f ** 2)             # 1/2 E[D(G(z))^2]


LOSSES: dict[str, LossPair] = {
    'non_saturating': LossPair(d_cross_entropy, g_non_saturating, d_real=_ce_real,
                               d_fake=_ce_fake),
    'minimax': LossPair(d_cross_entropy, g_minimax, d_real=_ce_real, d_fake=_ce_fake),
    'wasserstein': LossPair(d_wasserstein, g_wasserstein, _identity, _w_real, _w_fake),
    # G: -E[D(G(z))], as in SAGAN
    'hinge': LossPair(d_hinge, g_wasserstein, _identity, _hinge_real, _hinge_fake),
    'least_squares': LossPair(d_least_squares, g_least_squares, _identity, _ls_real, _ls_fake),
}


def gradient_penalty(critic: Callable[[jax.Array], jax.Array], x_real_BHWC: jax.Array,
                     x_fake_BHWC: jax.Array, eps_B: jax.Array) -> jax.Array:
  """WGAN-GP's E[(‖∇f(x̂)‖₂ - 1)²] at x̂ = ε·x + (1 - ε)·G(z), one ε ~ U(0, 1) per example.

  `critic` maps a batch to per-example scores and must treat examples independently (no
  BatchNorm), so the gradient of their sum is the per-example gradient.
  """
  eps_B111 = eps_B.reshape(-1, *([1] * (x_real_BHWC.ndim - 1)))
  x_hat = eps_B111 * x_real_BHWC + (1.0 - eps_B111) * x_fake_BHWC
  grad_BHWC = jax.grad(lambda x: jnp.sum(critic(x)))(x_hat)
  norm_B = jnp.sqrt(jnp.sum(grad_BHWC.reshape(grad_BHWC.shape[0], -1) ** 2, -1) + 1e-12)
  return jnp.mean((norm_B - 1.0) ** 2)


class AuxLoss(NamedTuple):
  """Auxiliary-classifier terms over D's class logits (B, K or K+1) and the labels (B,).

  d(real_class_logits, fake_class_logits, y_real, y_fake=y_real) -> added to D's loss; either
  logits may be None (a D step on real images only, or on fakes only), dropping its term;
  g(fake_class_logits, y_fake) -> added to G's loss.
  """
  d: Callable[..., jax.Array]
  g: Callable[[Optional[jax.Array], jax.Array], jax.Array]


def _no_aux_d(real_cls, fake_cls, y_B, y_fake_B=None):
  return jnp.zeros(())


def _no_aux_g(fake_cls, y_B):
  return jnp.zeros(())


NO_AUX = AuxLoss(_no_aux_d, _no_aux_g)


def class_nll(class_logits_BK: jax.Array, y_B: jax.Array) -> jax.Array:
  # -E[log P(C = y | X)]
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(class_logits_BK, y_B))


def acgan_aux(num_classes: int, fake_class: bool) -> AuxLoss:
  """ACGAN's L_C. D maximises L_S + L_C, G maximises L_C - L_S; as losses to minimise:

  fake_class=False (Odena et al., K outputs): D: -log P(y|x) - log P(c|G(z, c));
                                               G: -log P(c|G(z, c)).
  fake_class=True  (Keras seed, K+1 outputs): D: -log P(y|x) - log P(K|G(z, c)), K = "fake";
                                               G: -log P(c|G(z, c)).
  y: the real batch's labels; c: the fakes' labels (y itself, or sampled: GAN.sample_fake_labels).
  """

  def d(real_cls_BK, fake_cls_BK, y_B, y_fake_B=None):
    y_fake_B = y_B if y_fake_B is None else y_fake_B
    loss = jnp.zeros(())
    if real_cls_BK is not None:
      loss += class_nll(real_cls_BK, y_B)
    if fake_cls_BK is not None:
      fake_target_B = jnp.full_like(y_fake_B, num_classes) if fake_class else y_fake_B
      loss += class_nll(fake_cls_BK, fake_target_B)
    return loss

  def g(fake_cls_BK, y_B):
    return class_nll(fake_cls_BK, y_B)

  return AuxLoss(d, g)


def l1(x: jax.Array, y: jax.Array) -> jax.Array:
  # E|x - y|   (pix2pix's reconstruction term)
  return jnp.mean(jnp.abs(x - y))


def cycle_consistency(g_ab: Callable[[jax.Array], jax.Array],
                      g_ba: Callable[[jax.Array], jax.Array],
                      a: jax.Array, b: jax.Array) -> jax.Array:
  # L_cyc = E|F(G(a)) - a| + E|G(F(b)) - b|,  G = g_ab: A -> B, F = g_ba: B -> A
  return l1(g_ba(g_ab(a)), a) + l1(g_ab(g_ba(b)), b)


def identity_mapping(g_ab: Callable[[jax.Array], jax.Array],
                     g_ba: Callable[[jax.Array], jax.Array],
                     a: jax.Array, b: jax.Array) -> jax.Array:
  # L_id = E|G(b) - b| + E|F(a) - a|   (each generator leaves its own target domain alone)
  return l1(g_ab(b), b) + l1(g_ba(a), a)
