"""Conditional variational autoencoder (64x64, one channel).

The encoder sees the image with the condition vector broadcast as extra
input channels; the decoder maps a latent code and the condition vector to an
image, with the condition injected into every block by feature-wise scale and
shift (FiLM). Sampling draws the latent from N(0, T^2 I) with temperature T
(card ``sampler_defaults.temperature``) and decodes it.

Inpainting (optional capability) encodes the given image, draws a latent
from the approximate posterior, decodes it under the requested conditions and
keeps the original pixels outside the mask. The decoder regenerates the whole
image, so the pasted region can show a seam at the mask border; it is a
conditional reconstruction, not a model of the masked region given the rest.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from ..errors import CheckpointError
from ._training import TrainingLoop, TrainingResult, epoch_batches, image_model_card, image_training_set, save_and_reload
from .base import Generator, network_from_card, randn_per_image, torch_generators
from .conditions import ConditionSchema, encode_conditions

__all__ = ["VAEGenerator", "build_vae", "train_vae", "DEFAULT_VAE_ARCH"]

#: Default architecture of the shipped VAE.
DEFAULT_VAE_ARCH = {"image_size": 64, "channels": 1, "latent_dim": 32, "width": 32, "cond_dim": 7}


def build_vae(image_size: int = 64, channels: int = 1, latent_dim: int = 32, width: int = 32, cond_dim: int = 7):
    """Build the conditional VAE network (a ``torch.nn.Module``).

    Parameters
    ----------
    image_size : int
        Side of the square images; a multiple of 16.
    channels : int
    latent_dim : int
    width : int
        Channels of the first encoder block; later blocks use 2x and 4x.
    cond_dim : int
        Length of the condition vector (:attr:`ConditionSchema.width`).

    Examples
    --------
    >>> import torch
    >>> net = build_vae(image_size=16, latent_dim=4, width=4, cond_dim=3)
    >>> x, c = torch.rand(2, 1, 16, 16), torch.rand(2, 3)
    >>> recon, mu, logvar = net(x, c)
    >>> tuple(recon.shape), tuple(mu.shape)
    ((2, 1, 16, 16), (2, 4))
    """
    import torch
    from torch import nn

    if image_size % 16:
        raise CheckpointError(f"VAE image_size must be a multiple of 16, got {image_size}.")

    def gn(ch: int) -> nn.GroupNorm:
        return nn.GroupNorm(min(8, ch), ch)

    class FiLMBlock(nn.Module):
        """Upsample x2 (transposed conv), normalise, then condition-dependent scale and shift."""

        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.up = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)
            self.norm = gn(cout)
            self.film = nn.Linear(cond_dim, 2 * cout) if cond_dim else None
            self.act = nn.SiLU()

        def forward(self, h, c):
            h = self.norm(self.up(h))
            if self.film is not None:
                scale, shift = self.film(c).chunk(2, dim=1)
                h = h * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
            return self.act(h)

    class CVAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = width
            self.latent_dim = latent_dim
            self.cond_dim = cond_dim
            self.base = image_size // 16
            chans = [channels + cond_dim, w, 2 * w, 4 * w, 4 * w]
            layers: list[nn.Module] = []
            for a, b in zip(chans[:-1], chans[1:]):
                layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), gn(b), nn.SiLU()]
            self.encoder = nn.Sequential(*layers)
            flat = 4 * w * self.base * self.base
            self.to_stats = nn.Linear(flat, 2 * latent_dim)
            self.from_latent = nn.Linear(latent_dim + cond_dim, flat)
            dec = [4 * w, 4 * w, 2 * w, w, max(w // 2, 4)]
            self.blocks = nn.ModuleList(FiLMBlock(a, b) for a, b in zip(dec[:-1], dec[1:]))
            self.out = nn.Conv2d(dec[-1], channels, 3, padding=1)

        def encode(self, x, c):
            cm = c[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
            h = self.encoder(torch.cat([x, cm], 1)).flatten(1)
            mu, logvar = self.to_stats(h).chunk(2, dim=1)
            return mu, logvar.clamp(-12, 6)

        def decode(self, z, c):
            h = self.from_latent(torch.cat([z, c], 1)).view(len(z), -1, self.base, self.base)
            h = nn.functional.silu(h)
            for blk in self.blocks:
                h = blk(h, c)
            return torch.sigmoid(self.out(h))

        def forward(self, x, c, eps=None):
            mu, logvar = self.encode(x, c)
            if eps is None:
                eps = torch.randn_like(mu)
            z = mu + eps * (0.5 * logvar).exp()
            return self.decode(z, c), mu, logvar

    return CVAE()


class VAEGenerator(Generator):
    """Generator backed by a conditional VAE checkpoint.

    Capabilities: ``"conditions"`` and ``"inpaint"`` (see the module notes on
    what VAE inpainting means).

    Parameters
    ----------
    card : mapping
    tensors : mapping of str to torch.Tensor
        The network's state dict.
    sha256 : str, optional
    path : str, optional
    temperature : float, optional
        Scale of the latent prior at sampling; defaults to the card's
        ``sampler_defaults.temperature`` (1.0 when absent).
    device : str, default "cpu"
        Torch device (``"cuda"`` raises :class:`CapabilityError` where there is none).
    dtype : str or torch.dtype, optional
        Precision of the network: float32 (default), bfloat16, or float16 on a GPU
        (see :mod:`medsynth_explore.generators.devices`). Images stay float32.

    Examples
    --------
    >>> from medsynth_explore.generators import load_generator
    >>> g = load_generator("phantomcxr-vae")  # doctest: +SKIP
    >>> g.sample(4, conditions={"findings": ["cardiomegaly"]}, seed=0).images.shape  # doctest: +SKIP
    (4, 1, 64, 64)
    """

    default_batch_size = 64

    def __init__(
        self,
        card: Mapping[str, Any],
        tensors: Mapping[str, Any],
        sha256: str | None = None,
        path: str | None = None,
        temperature: float | None = None,
        device: Any = "cpu",
        dtype: Any = None,
    ) -> None:
        super().__init__(card, sha256=sha256, path=path)
        from .devices import resolve_device, resolve_dtype

        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.net = network_from_card(self, build_vae, tensors, "VAE", self.device).to(self.dtype)
        t = temperature if temperature is not None else self._card.get("sampler_defaults", {}).get("temperature", 1.0)
        self.temperature = float(t)
        self._capabilities = frozenset({"conditions", "inpaint"} if len(self._schema) else {"inpaint"})

    @classmethod
    def from_checkpoint(cls, checkpoint: Any, **kw: Any) -> "VAEGenerator":
        """Build from a loaded :class:`~medsynth_explore.checkpoint.Checkpoint`."""
        return cls(checkpoint.card, checkpoint.tensors, sha256=checkpoint.sha256, path=checkpoint.path, **kw)

    def _cond(self, table: pd.DataFrame):
        return encode_conditions(table, self._schema).to(self.device, self.dtype)

    def _generate(self, cond_table, rng_seed, steps, guidance, prompts):
        import torch

        with torch.no_grad():
            z = randn_per_image(rng_seed, (self.net.latent_dim,)).to(self.device, self.dtype) * self.temperature
            return self.net.decode(z, self._cond(cond_table)).float().cpu().numpy()

    def _inpaint(self, images, masks, cond_table, rng_seed, steps, guidance, prompts):
        import torch

        with torch.no_grad():
            c = self._cond(cond_table)
            x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device, self.dtype)
            mu, logvar = self.net.encode(x, c)
            eps = randn_per_image(torch_generators(rng_seed), (self.net.latent_dim,)).to(self.device, self.dtype)
            z = mu + eps * (0.5 * logvar).exp() * self.temperature
            return self.net.decode(z, c).float().cpu().numpy()

    def encode(self, images: Any, conditions: Any = None) -> np.ndarray:
        """Posterior means of the latent codes of images (for latent-space exploration).

        Parameters
        ----------
        images : ImageSet or array (N, 1, H, W)
        conditions : dict or DataFrame, optional
            Defaults to the ImageSet's metadata condition columns.
        """
        import torch

        from ..data.imageset import ImageSet, as_image_array

        meta = images.metadata if isinstance(images, ImageSet) else None
        arr = images.images if isinstance(images, ImageSet) else as_image_array(images)
        if conditions is None and meta is not None:
            cols = [c for c in meta.columns if c in set(self._schema.columns)]
            conditions = meta[cols]
        table = self._resolve(len(arr), conditions, None, 0)
        with torch.no_grad():
            mu, _ = self.net.encode(torch.from_numpy(arr).to(self.device, self.dtype), self._cond(table))
        return mu.float().cpu().numpy()


def train_vae(
    data: Any,
    out: Any,
    epochs: int = 30,
    seed: int = 0,
    callback: Callable[[int, int], Any] | None = None,
    *,
    schema: ConditionSchema | None = None,
    batch_size: int = 64,
    lr: float = 2e-3,
    latent_dim: int = 32,
    width: int = 32,
    sigma: float = 0.2,
    kl_warmup: float = 0.3,
    temperature: float = 0.8,
    name: str = "phantomcxr-vae",
    weights_dtype: str = "float16",
    max_seconds: float | None = None,
    log: Callable[[str], Any] | None = None,
) -> TrainingResult:
    """Train a conditional VAE on an ImageSet and save it as a checkpoint.

    Parameters
    ----------
    data : ImageSet
        Training images (1, 64, 64) with metadata columns ``age``, ``sex``
        and one 0/1 column per finding (or a ``findings`` list column).
    out : path-like
        Output ``.safetensors`` file.
    epochs : int
    seed : int
        Seeds initialisation, shuffling and noise.
    callback : callable(done_steps, total_steps), optional
        Return ``False`` to cancel (raises :class:`CancelledError`; nothing is saved).
    schema : ConditionSchema, optional
        Defaults to :func:`phantomcxr_schema`.
    batch_size, lr, latent_dim, width : training and architecture settings
    sigma : float
        Pixel noise scale of the Gaussian likelihood (smaller: sharper, less regular).
    kl_warmup : float
        Fraction of training over which the KL weight rises linearly from 0 to 1.
    temperature : float
        Default latent temperature at sampling, written to the card's sampler defaults.
    name : str
        Model name written in the card.
    weights_dtype : {"float16", "float32"}
        Storage type of the floating-point weights (float16 halves the file;
        they are computed in float32 after loading).
    max_seconds : float, optional
        Stop after the first epoch that ends past this wall-clock budget; the
        card records the epochs actually run.
    log : callable(str), optional
        Receives one progress line per epoch.

    Returns
    -------
    TrainingResult
        ``(generator, card)``: the :class:`VAEGenerator` loaded back from
        ``out``, and the model card written into it, plus ``card["sha256"]``,
        the file's SHA-256.

    Examples
    --------
    >>> from medsynth_explore.phantom import simulate  # doctest: +SKIP
    >>> gen, card = train_vae(simulate(256, seed=0), "vae.safetensors", epochs=1)  # doctest: +SKIP
    """
    import torch

    run = image_training_set(data, out, epochs, batch_size, schema, seed, latent_dim, width)
    x_all, cond, image_size = run.images, run.cond, run.arch["image_size"]
    net = build_vae(**run.arch)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=run.total_steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    warm = max(1, int(kl_warmup * run.total_steps))
    loop = TrainingLoop(run.total_steps, callback, max_seconds, log)

    def step(idx):
        x, c = x_all[idx], cond[idx]
        eps = torch.randn((len(idx), latent_dim), generator=gen)
        recon, mu, logvar = net(x, c, eps)
        rec = ((recon - x) ** 2).flatten(1).sum(1).mean() / (2 * sigma**2)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1).mean()
        loss = rec + min(1.0, (loop.step + 1) / warm) * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 100.0)
        opt.step()
        sched.step()
        return {"rec": float(rec.detach()), "kl": float(kl.detach())}

    def summary(epoch, m):
        rmse = float(np.sqrt(m["rec"] * 2 * sigma**2 / (image_size * image_size)))
        return {
            "epoch": epoch,
            "recon_rmse": round(rmse, 5),
            "kl": round(m["kl"], 3),
        }, f"recon RMSE {rmse:.4f}, KL {m['kl']:.2f} nats"

    net.train()
    history = loop.run_epochs(run.epochs, lambda epoch: epoch_batches(len(x_all), run.batch_size, gen), step, summary)
    net.eval()
    card = image_model_card(
        name,
        "vae",
        run,
        data,
        loop,
        seed,
        description="Conditional VAE (FiLM-conditioned decoder) for 64x64 single-channel chest radiographs.",
        capabilities=["conditions", "inpaint"] if len(run.schema) else ["inpaint"],
        training={
            "optimizer": "Adam",
            "lr": lr,
            "lr_schedule": "one-cycle",
            "likelihood": f"Gaussian, sigma={sigma}",
            "kl_warmup_fraction": kl_warmup,
        },
        sampler_defaults={"sampler": "vae-prior", "temperature": float(temperature)},
        limitations=[
            "VAE samples are smoother (blurrier) than the training images; fine texture and small nodules are weak.",
            "Inpainting decodes a whole new image from the posterior and pastes the masked region; seams can show at the "
            "mask border.",
        ],
        metrics={"final_recon_rmse": history[-1]["recon_rmse"], "final_kl_nats": history[-1]["kl"]},
    )
    ck, card = save_and_reload(run.out, net.state_dict(), card, weights_dtype)
    return TrainingResult(VAEGenerator.from_checkpoint(ck), card)
