"""GAN objectives as pure functions of discriminator outputs.

A `LossPair` is the adversarial objective: d(real_logits, fake_logits) and g(fake_logits),
each a scalar mean over the (local) batch; `score` maps a logit to what the logs call D(x)
(a probability for the cross-entropy losses, the critic value otherwise). The gradient
penalty and the auxiliary-classifier terms are added on top by the step when the GAN asks.
"""

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax


class LossPair(NamedTuple):
  """d(real_logits, fake_logits) -> D's loss;  g(fake_logits) -> G's loss."""
  d: Callable[[jax.Array, jax.Array], jax.Array]
  g: Callable[[jax.Array], jax.Array]
  score: Callable[[jax.Array], jax.Array] = jax.nn.sigmoid


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


LOSSES: dict[str, LossPair] = {
    'non_saturating': LossPair(d_cross_entropy, g_non_saturating),
    'minimax': LossPair(d_cross_entropy, g_minimax),
    'wasserstein': LossPair(d_wasserstein, g_wasserstein, _identity),
    'hinge': LossPair(d_hinge, g_wasserstein, _identity),  # G: -E[D(G(z))], as in SAGAN
    'least_squares': LossPair(d_least_squares, g_least_squares, _identity),
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
  """Auxiliary-classifier terms over D's class logits (B, K or K+1) and the labels y (B,).

  d(real_class_logits, fake_class_logits, y) -> added to D's loss;
  g(fake_class_logits, y) -> added to G's loss.
  """
  d: Callable[[Optional[jax.Array], Optional[jax.Array], jax.Array], jax.Array]
  g: Callable[[Optional[jax.Array], jax.Array], jax.Array]


def _no_aux_d(real_cls, fake_cls, y_B):
  return jnp.zeros(())


def _no_aux_g(fake_cls, y_B):
  return jnp.zeros(())


NO_AUX = AuxLoss(_no_aux_d, _no_aux_g)


def class_nll(class_logits_BK: jax.Array, y_B: jax.Array) -> jax.Array:
  # -E[log P(C = y | X)]
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(class_logits_BK, y_B))


def acgan_aux(num_classes: int, fake_class: bool) -> AuxLoss:
  """ACGAN's L_C. D maximises L_S + L_C, G maximises L_C - L_S; as losses to minimise:

  fake_class=False (Odena et al., K outputs): D: -log P(y|x) - log P(y|G(z, y));
                                               G: -log P(y|G(z, y)).
  fake_class=True  (Keras seed, K+1 outputs): D: -log P(y|x) - log P(K|G(z, y)), K = "fake";
                                               G: -log P(y|G(z, y)).
  """

  def d(real_cls_BK, fake_cls_BK, y_B):
    fake_target_B = jnp.full_like(y_B, num_classes) if fake_class else y_B
    return class_nll(real_cls_BK, y_B) + class_nll(fake_cls_BK, fake_target_B)

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
