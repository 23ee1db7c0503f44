"""CGAN, fully connected, label concatenated (the compact textbook CGAN): G(z ‖ onehot y) and
D(x ‖ onehot y), one hidden layer of 128 (ReLU, Xavier init), sigmoid images; z ~ U(-1, 1)^100;
Adam 1e-3 (default betas); batch 64.

  python train.py --config=configs/cgan_mlp_concat.py --workdir=runs/cgan_mlp_concat
  python train.py --config=configs/cgan_mlp_concat.py:mnist --workdir=runs/cgan_mlp_concat_mnist

Expected: each row drifts towards its class within an epoch; samples stay noisy (one hidden layer).
"""

from configs import default


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.dataset = dataset
  config.model = default.model('mlp', conditioning='concat')
  config.z_dim = 100
  config.num_epochs = 20
  config.g_optimizer = default.optimizer(name='adam', learning_rate=0.001, b1=0.9, b2=0.999)
  config.d_optimizer = default.optimizer(name='adam', learning_rate=0.001, b1=0.9, b2=0.999)
  return config
