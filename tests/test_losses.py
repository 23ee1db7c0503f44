"""The loss pairs against values computed by hand."""

import jax.numpy as jnp
import numpy as np

from cgan_jax import losses


def test_cross_entropy_at_chance_is_2_log_2():
  z = jnp.zeros(4)
  np.testing.assert_allclose(losses.d_cross_entropy(z, z), 2 * np.log(2), rtol=1e-6)


def test_cross_entropy_matches_the_formula():
  real, fake = jnp.array([2.0, -1.0]), jnp.array([0.5, 3.0])
  sig = lambda t: 1 / (1 + np.exp(-np.asarray(t)))
  want = -np.mean(np.log(sig(real))) - np.mean(np.log(1 - sig(fake)))
  np.testing.assert_allclose(losses.d_cross_entropy(real, fake), want, rtol=1e-6)


def test_generator_losses():
  fake = jnp.array([1.5, -0.5])
  sig = 1 / (1 + np.exp(-np.asarray(fake)))
  np.testing.assert_allclose(losses.g_non_saturating(fake), -np.mean(np.log(sig)), rtol=1e-6)
  np.testing.assert_allclose(losses.g_minimax(fake), np.mean(np.log(1 - sig)), rtol=1e-6)


def test_losses_are_finite_for_extreme_logits():
  big = jnp.array([1e4, -1e4])
  assert np.isfinite(losses.d_cross_entropy(big, -big))
  assert np.isfinite(losses.g_non_saturating(big))
