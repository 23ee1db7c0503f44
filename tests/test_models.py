"""Shapes, ranges and conditioning of the seed-000 G and D."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cgan_jax.models import infogan


@pytest.fixture(scope='module')
def nets():
  g, d = infogan.Generator(), infogan.Discriminator()
  z = jax.random.uniform(jax.random.PRNGKey(0), (8, 62), minval=-1, maxval=1)
  y = jnp.arange(8) % 10
  g_vars = g.init(jax.random.PRNGKey(1), z, y, train=False)
  d_vars = d.init(jax.random.PRNGKey(2), jnp.zeros((8, 28, 28, 1)), y, train=False)
  return g, d, g_vars, d_vars, z, y


def test_generator_shape_and_range(nets):
  g, _, g_vars, _, z, y = nets
  x, _ = g.apply(g_vars, z, y, train=True, mutable=['batch_stats'])
  assert x.shape == (8, 28, 28, 1)
  assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
  assert float(x.std()) > 0  # not a constant image


def test_discriminator_gives_one_logit_per_image(nets):
  _, d, _, d_vars, _, y = nets
  x = jax.random.uniform(jax.random.PRNGKey(3), (8, 28, 28, 1))
  out = d.apply(d_vars, x, y, train=False)
  assert out.logits.shape == (8,) and out.logits.dtype == jnp.float32
  assert out.class_logits is None


def test_layer_sizes_match_the_recipe(nets):
  _, _, g_vars, d_vars, _, _ = nets
  gp, dp = g_vars['params'], d_vars['params']
  assert gp['Dense_0']['kernel'].shape == (62 + 10, 1024)
  assert gp['Dense_1']['kernel'].shape == (1024, 7 * 7 * 128)
  assert gp['ConvTranspose_0']['kernel'].shape == (4, 4, 128, 64)
  assert dp['Conv_0']['kernel'].shape == (4, 4, 1 + 10, 64)
  assert dp['Conv_1']['kernel'].shape == (4, 4, 64, 128)
  assert dp['Dense_0']['kernel'].shape == (7 * 7 * 128, 1024)


def test_both_nets_use_the_label(nets):
  g, d, g_vars, d_vars, z, y = nets
  x0 = g.apply(g_vars, z, y, train=False)
  x1 = g.apply(g_vars, z, (y + 1) % 10, train=False)
  assert float(jnp.abs(x0 - x1).max()) > 1e-4
  l0 = d.apply(d_vars, x0, y, train=False).logits
  l1 = d.apply(d_vars, x0, (y + 1) % 10, train=False).logits
  assert float(jnp.abs(l0 - l1).max()) > 1e-5


def test_unconditional_variant_ignores_the_label():
  g = infogan.Generator(conditional=False)
  z = jnp.ones((2, 62)) * 0.3
  v = g.init(jax.random.PRNGKey(0), z, jnp.array([0, 1]), train=False)
  assert v['params']['Dense_0']['kernel'].shape == (62, 1024)
  np.testing.assert_array_equal(g.apply(v, z, jnp.array([0, 1]), train=False),
                                g.apply(v, z, jnp.array([5, 9]), train=False))


def test_uniform_latent_is_in_range():
  z = infogan.uniform_latent(jax.random.PRNGKey(0), 1000)
  assert z.shape == (1000,) and float(z.min()) >= -1 and float(z.max()) <= 1
  assert float(z.min()) < -0.9 and float(z.max()) > 0.9
