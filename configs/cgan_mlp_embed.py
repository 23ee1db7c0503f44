"""CGAN, fully connected, label embedding multiplied with the input (seed 001, TF2/Keras): G z(100)
⊙ Emb(10, 100)(y) -> 256 -> BN -> lReLU -> 512 -> BN -> lReLU -> 784 tanh -> BN (the Keras
model's BatchNormalization after the tanh layer, `g_output_batch_norm`); D flatten(x) ⊙
Emb(10, 784)(y) -> 512 -> BN -> lReLU -> 256 -> BN -> lReLU -> 1; z ~ N(0, I); Adam 1e-4 both;
batch 256; 100 epochs. One forward pass per batch gives both losses and both nets step
(`simultaneous_updates`: the seed's `train_step` takes G's gradient through D before D's
update, from the same D(G(z)) as D's loss).

  python train.py --config=configs/cgan_mlp_embed.py --workdir=runs/cgan_mlp_embed
  python train.py --config=configs/cgan_mlp_embed.py:mnist --workdir=runs/cgan_mlp_embed_mnist

Expected: class-recognisable rows after a few epochs.
"""

from configs import default


def get_config(dataset: str = 'fashion_mnist'):
  config = default.get_config()
  config.dataset = dataset
  config.model = 'mlp_cgan_embed'
  config.z_dim = 100
  config.batch_size = 256
  config.num_epochs = 100
  config.g_optimizer = default.optimizer(name='adam', learning_rate=0.0001, b1=0.9, b2=0.999)
  config.d_optimizer = default.optimizer(name='adam', learning_rate=0.0001, b1=0.9, b2=0.999)
  config.g_output_batch_norm = True  # the seed's BatchNormalization after G's tanh
  config.simultaneous_updates = True  # both losses from one forward pass, both nets step
  return config
