"""D's minibatch standard deviation (Karras et al. 2018; model.minibatch_std of the infogan
family): the appended channel against a NumPy computation, groups that keep N devices equal
to one, refusal of a batch that does not split into groups, and checkpoints from before the
option."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cgan_jax import models, trainer
from cgan_jax.errors import UserError
from cgan_jax.models import common, infogan
from configs import cgan_projection_infogan

K = 10


def _by_hand(h, group):
  """The ProGAN statistic in float64: std over each group of consecutive examples (biased,
  + 1e-8 inside the root), averaged over features and positions."""
  h = np.asarray(h, np.float64)
  g = h.reshape(h.shape[0] // group, group, *h.shape[1:])
  return np.repeat(np.sqrt(g.var(axis=1) + 1e-8).reshape(g.shape[0], -1).mean(-1), group)


@pytest.mark.parametrize('group', [2, 4])
def test_the_appended_channel_is_each_groups_mean_stddev(group):
  h = jax.random.normal(jax.random.PRNGKey(0), (8, 3, 3, 5)) * jnp.arange(1, 9)[:, None, None,
                                                                                  None]
  out = common.minibatch_stddev(h, group, train=True)
  assert out.shape == (8, 3, 3, 6)
  np.testing.assert_array_equal(out[..., :5], h)
  want = _by_hand(h, group)
  np.testing.assert_allclose(out[..., 5], np.broadcast_to(want[:, None, None], (8, 3, 3)),
                             rtol=1e-5)
  assert len(set(np.round(want, 5))) == 8 // group  # the examples' scales differ: one per group
  # On (B, F) too.
  flat = common.minibatch_stddev(h.reshape(8, -1), group, train=True)
  np.testing.assert_allclose(flat[:, -1], _by_hand(h.reshape(8, -1), group), rtol=1e-5)


def test_a_group_of_identical_fakes_scores_zero_and_gradients_are_finite():
  same = jnp.broadcast_to(jax.random.normal(jax.random.PRNGKey(1), (1, 7, 7, 4)), (4, 7, 7, 4))
  np.testing.assert_allclose(common.minibatch_stddev(same, 4, train=True)[..., -1], 1e-4,
                             rtol=1e-3)  # sqrt(0 + 1e-8)
  grad = jax.grad(lambda h: jnp.sum(common.minibatch_stddev(h, 4, train=True)[..., -1]))(same)
  assert bool(jnp.all(jnp.isfinite(grad)))


def test_d_on_the_whole_batch_equals_d_on_each_devices_share():
  """Groups are consecutive examples: D on 8 examples gives the logits of D on 4 shares of
  2 (what 4 devices compute), and a different grouping would not."""
  d = infogan.Discriminator(K, projection=True, minibatch_std=2)
  x = jax.random.uniform(jax.random.PRNGKey(0), (8, 28, 28, 1))
  y = jnp.arange(8) % K
  variables = d.init(jax.random.PRNGKey(1), x[:1], y[:1], train=False)
  assert variables['params']['Dense_0']['kernel'].shape[0] == 7 * 7 * 129
  apply = lambda x, y: d.apply(variables, x, y, train=True, mutable=['batch_stats'])[0].logits
  whole = apply(x, y)
  shares = jnp.concatenate([apply(x[i:i + 2], y[i:i + 2]) for i in range(0, 8, 2)])
  np.testing.assert_allclose(whole, shares, rtol=1e-5, atol=1e-6)
  swapped = jnp.array([0, 2, 1, 3, 4, 5, 6, 7])  # regrouped: 0 with 2, 1 with 3
  assert float(jnp.abs(apply(x[swapped], y[swapped])[:2] - whole[jnp.array([0, 2])]).max()) > 0


def test_a_device_batch_that_does_not_split_into_groups_is_refused_in_training():
  h = jnp.ones((6, 7, 7, 3))
  with pytest.raises(UserError, match=r'model.minibatch_std=4 needs each device\'s batch to '
                                      r'divide by 4; this one has 6 examples'):
    common.minibatch_stddev(h, 4, train=True)
  assert common.minibatch_stddev(h, 4, train=False).shape == (6, 7, 7, 4)  # init: gcd 2


def test_option_is_validated_and_builds_a_d_with_the_channel():
  config = cgan_projection_infogan.get_config()
  config.model.minibatch_std = 3
  assert models.problems(config.model) == [
      'model.minibatch_std must be one of 0, 2, 4, 8, got 3']
  config.model.minibatch_std = 4
  assert models.build(config, K, None).discriminator.minibatch_std == 4


def test_a_checkpoint_config_from_before_the_option_resumes():
  """A run written before infogan had minibatch_std: its saved model group lacks the option;
  it is read as the default (0, what it trained with), so the run resumes under today's
  recipe, and is refused against a config that turns the option on."""
  today = cgan_projection_infogan.get_config()
  saved = today.to_dict()
  del saved['model']['minibatch_std']
  trainer.check_same_run({'config': models.upgrade(saved)}, today, 'runs/x')
  today.model.minibatch_std = 4
  with pytest.raises(UserError, match='model.minibatch_std: checkpoint 0 vs config 4'):
    trainer.check_same_run({'config': models.upgrade(saved)}, today, 'runs/x')
  today.model.minibatch_std = 0
  with pytest.raises(UserError, match='model.minibatch_std: checkpoint None vs config 0'):
    trainer.check_same_run({'config': saved}, today, 'runs/x')  # what upgrade() prevents
