"""CGAN, fully connected, label embedding multiplied with the input (seed 001, TF2/Keras): G z(100)
⊙ Emb(10, 100)(y) -> 256 -> BN -> lReLU -> 512 -> BN -> lReLU -> 784 tanh; D flatten(x) ⊙
Emb(10, 784)(y) -> 512 -> BN -> lReLU -> 256 -> BN -> lReLU -> 1; z ~ N(0, I); Adam 1e-4 both;
batch 256; 100 epochs. One forward pass per batch gives both losses and both nets step
(`simultaneous_updates`: as the seed's `train_step`, G's gradient goes through D as it was
before D's update, from the same D(G(z)) as D's loss).

Departure: the seed's Keras G ends Dense(784, tanh) -> BatchNormalization; we drop that last
BN (it is `model.g_output_batch_norm`, off). Measured on real Fashion-MNIST at the learning
check's budget (9 epochs, 2,106 steps of 256, seed 0; eval.py, 10,000 samples, 2026-12-02):
  alternating, no output BN (before issue 17)   FID 23.1, cond. acc 62.7 %
  simultaneous, no output BN (this recipe)      FID 25.1, cond. acc 64.5 %
  alternating, output BN                        FID 123.6, cond. acc 10.3 %
  simultaneous, output BN (the seed exactly)    FID 120.7, cond. acc 10.6 % (noise images)
The seed's article itself reports its samples degrading with more epochs.

  python train.py --config=configs/cgan_mlp_embed.py --workdir=runs/cgan_mlp_embed
  python train.py --config=configs/cgan_mlp_embed.py:mnist --workdir=runs/cgan_mlp_embed_mnist

Expected: class-recognisable rows after a few epochs.
"""

from configs import default


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.dataset = dataset
  config.model = default.model('mlp', conditioning='embed')
  config.z_dim = 100
  config.batch_size = 256
  config.num_epochs = 100
  config.g_optimizer = default.optimizer(name='adam', learning_rate=0.0001, b1=0.9, b2=0.999)
  config.d_optimizer = default.optimizer(name='adam', learning_rate=0.0001, b1=0.9, b2=0.999)
  config.model.g_output_batch_norm = False  # the seed's BN after G's tanh: see the docstring
  config.simultaneous_updates = True  # both losses from one forward pass, both nets step
  return config
