"""GAN objectives as pure (d_loss, g_loss) pairs over discriminator logits.

Each takes per-example logits and returns a scalar mean over the (local) batch.
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class LossPair(NamedTuple):
  """d(real_logits, fake_logits) -> D's loss;  g(fake_logits) -> G's loss."""
  d: Callable[[jax.Array, jax.Array], jax.Array]
  g: Callable[[jax.Array], jax.Array]


def d_cross_entropy(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  # L_D = -E[log D(x)] - E[log(1 - D(G(z)))],  with D = sigmoid(logit)
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def g_non_saturating(fake_logits: jax.Array) -> jax.Array:
  # L_G = -E[log D(G(z))]
  return jnp.mean(jax.nn.softplus(-fake_logits))


def g_minimax(fake_logits: jax.Array) -> jax.Array:
  # L_G = E[log(1 - D(G(z)))]   (the original, saturating objective)
  return -jnp.mean(jax.nn.softplus(fake_logits))


LOSSES: dict[str, LossPair] = {
    'non_saturating': LossPair(d_cross_entropy, g_non_saturating),
    'minimax': LossPair(d_cross_entropy, g_minimax),
}
