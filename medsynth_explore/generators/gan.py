"""Conditional GAN (64x64, one channel): DCGAN-style generator, projection discriminator.

The generator maps a latent code and the condition vector to an image through
transposed convolutions with conditional batch normalisation (batch
statistics are replaced by running averages at sampling, so each image depends
only on its own latent and conditions). The discriminator uses spectral
normalisation and a projection term ``<embed(c), h(x)>`` for the conditions;
training uses the hinge loss. Only the generator is stored in the checkpoint.

GANs cannot inpaint here: :meth:`GANGenerator.inpaint` raises
:class:`~medsynth_explore.errors.CapabilityError`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from ..checkpoint import load_checkpoint
from ..errors import CheckpointError
from ._training import (
    ParameterEMA,
    TrainingLoop,
    TrainingResult,
    duration,
    epoch_batches,
    image_model_card,
    image_training_set,
    save_and_reload,
)
from .base import Generator, network_from_card, randn_per_image
from .conditions import ConditionSchema, encode_conditions

__all__ = ["GANGenerator", "build_gan_generator", "build_gan_discriminator", "train_gan", "DEFAULT_GAN_ARCH"]

#: Default architecture of the shipped GAN.
DEFAULT_GAN_ARCH = {"image_size": 64, "channels": 1, "latent_dim": 64, "width": 16, "cond_dim": 7}


def build_gan_generator(image_size: int = 64, channels: int = 1, latent_dim: int = 64, width: int = 16, cond_dim: int = 7):
    """Build the conditional generator network.

    Channels go 8w (4x4) -> 4w -> 2w -> w -> w/2 at full size (for 64x64).

    Examples
    --------
    >>> import torch
    >>> g = build_gan_generator(image_size=16, latent_dim=4, width=4, cond_dim=2).eval()
    >>> tuple(g(torch.randn(3, 4), torch.rand(3, 2)).shape)
    (3, 1, 16, 16)
    """
    import torch
    from torch import nn

    n_up = int(np.log2(image_size // 4))
    if 4 * 2**n_up != image_size:
        raise CheckpointError(f"GAN image_size must be 4 times a power of two, got {image_size}.")

    class CondBN(nn.Module):
        def __init__(self, ch: int) -> None:
            super().__init__()
            self.bn = nn.BatchNorm2d(ch, affine=False)
            self.gain = nn.Linear(cond_dim + latent_dim, ch)
            self.bias = nn.Linear(cond_dim + latent_dim, ch)
            nn.init.zeros_(self.gain.weight)
            nn.init.zeros_(self.gain.bias)
            nn.init.zeros_(self.bias.weight)
            nn.init.zeros_(self.bias.bias)

        def forward(self, h, y):
            return self.bn(h) * (1 + self.gain(y)[:, :, None, None]) + self.bias(y)[:, :, None, None]

    class Gen(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.latent_dim = latent_dim
            self.cond_dim = cond_dim
            chans = [width * 2 ** (n_up - 1 - i) for i in range(n_up)] + [max(width // 2, 4)]
            # e.g. 64x64, width 16: [128, 64, 32, 16, 8]
            self.c0 = chans[0]
            self.fc = nn.Linear(latent_dim + cond_dim, chans[0] * 16)
            self.bn0 = CondBN(chans[0])
            self.ups = nn.ModuleList(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1) for a, b in zip(chans[:-1], chans[1:]))
            self.bns = nn.ModuleList(CondBN(b) for b in chans[1:])
            self.out = nn.Conv2d(chans[-1], channels, 3, padding=1)

        def forward(self, z, c):
            y = torch.cat([z, c], 1)
            h = self.fc(y).view(len(z), self.c0, 4, 4)
            h = torch.relu(self.bn0(h, y))
            for up, bn in zip(self.ups, self.bns):
                h = torch.relu(bn(up(h), y))
            return 0.5 * (torch.tanh(self.out(h)) + 1.0)

    return Gen()


def build_gan_discriminator(image_size: int = 64, channels: int = 1, width: int = 16, cond_dim: int = 7):
    """Build the projection discriminator (spectral-normalised convolutions).

    Examples
    --------
    >>> import torch
    >>> d = build_gan_discriminator(image_size=16, width=4, cond_dim=2)
    >>> tuple(d(torch.rand(3, 1, 16, 16), torch.rand(3, 2)).shape)
    (3,)
    """
    from torch import nn
    from torch.nn.utils.parametrizations import spectral_norm

    n_down = int(np.log2(image_size // 4))

    class Disc(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            chans = [channels] + [width * 2**i for i in range(n_down)]
            layers: list[nn.Module] = []
            for a, b in zip(chans[:-1], chans[1:]):
                layers += [spectral_norm(nn.Conv2d(a, b, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            layers += [spectral_norm(nn.Conv2d(chans[-1], chans[-1], 3, padding=1)), nn.LeakyReLU(0.2)]
            self.body = nn.Sequential(*layers)
            self.lin = spectral_norm(nn.Linear(chans[-1], 1))
            self.embed = spectral_norm(nn.Linear(cond_dim, chans[-1], bias=False)) if cond_dim else None

        def forward(self, x, c):
            h = self.body(x * 2.0 - 1.0).sum(dim=(2, 3))
            out = self.lin(h).squeeze(1)
            if self.embed is not None:
                out = out + (self.embed(c) * h).sum(1)
            return out

    return Disc()


class GANGenerator(Generator):
    """Generator backed by a conditional GAN checkpoint.

    Capabilities: ``"conditions"`` only; :meth:`inpaint` raises
    :class:`CapabilityError`.

    Parameters
    ----------
    card : mapping
    tensors : mapping of str to torch.Tensor
        The generator network's state dict.
    sha256, path : optional
    truncation : float, optional
        Latent scale at sampling (1.0 = the training prior; smaller trades
        diversity for fidelity). Defaults to the card's ``sampler_defaults``.
    device : str, default "cpu"
        Torch device (``"cuda"`` raises :class:`CapabilityError` where there is none).
    dtype : str or torch.dtype, optional
        Precision of the network: float32 (default), bfloat16, or float16 on a GPU
        (see :mod:`medsynth_explore.generators.devices`). Images stay float32.

    Examples
    --------
    >>> from medsynth_explore.generators import load_generator
    >>> g = load_generator("phantomcxr-gan")  # doctest: +SKIP
    >>> g.sample(4, conditions={"sex": "F"}, seed=0).images.shape  # doctest: +SKIP
    (4, 1, 64, 64)
    """

    default_batch_size = 64

    def __init__(
        self,
        card: Mapping[str, Any],
        tensors: Mapping[str, Any],
        sha256: str | None = None,
        path: str | None = None,
        truncation: float | None = None,
        device: Any = "cpu",
        dtype: Any = None,
    ) -> None:
        super().__init__(card, sha256=sha256, path=path)
        from .devices import resolve_device, resolve_dtype

        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.net = network_from_card(self, build_gan_generator, tensors, "GAN", self.device).to(self.dtype)
        t = truncation if truncation is not None else self._card.get("sampler_defaults", {}).get("truncation", 1.0)
        self.truncation = float(t)
        self._capabilities = frozenset({"conditions"} if len(self._schema) else set())

    @classmethod
    def from_checkpoint(cls, checkpoint: Any, **kw: Any) -> "GANGenerator":
        """Build from a loaded :class:`~medsynth_explore.checkpoint.Checkpoint`."""
        return cls(checkpoint.card, checkpoint.tensors, sha256=checkpoint.sha256, path=checkpoint.path, **kw)

    def _generate(self, cond_table, rng_seed, steps, guidance, prompts):
        import torch

        with torch.no_grad():
            z = randn_per_image(rng_seed, (self.net.latent_dim,)).to(self.device, self.dtype) * self.truncation
            c = encode_conditions(cond_table, self._schema).to(self.device, self.dtype)
            return self.net(z, c).float().cpu().numpy()


def _init_generator(init_from: Any, arch: dict) -> tuple:
    """Generator weights, SHA-256 and card of ``init_from`` (a GAN checkpoint path or a :class:`GANGenerator`)."""
    if isinstance(init_from, Generator):
        card, sha, source = dict(init_from.card), init_from.sha256, init_from.path or init_from.name
    else:
        ck = load_checkpoint(init_from)
        card, sha, source = dict(ck.card), ck.sha256, str(init_from)
    if card["family"] != "gan" or {k: card["architecture"].get(k) for k in arch} != arch:
        raise CheckpointError(f"init_from {source!r} is not a GAN with architecture {arch}; it has {card['architecture']}.")
    tensors = init_from.net.state_dict() if isinstance(init_from, Generator) else ck.tensors
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, sha, card


def _previous_runs(card: Mapping[str, Any] | None, sha: str | None) -> list:
    """The runs that shaped the starting weights: the ``init_from`` run first, then the runs before it."""
    if card is None:
        return []
    tr = dict(card.get("training") or {})
    run = {k: tr[k] for k in ("epochs", "steps", "loss", "time_seconds") if k in tr}
    run.update(sha256=sha, note="its generator started this run; its discriminator was discarded")
    return [run] + list(tr.get("previous_runs") or [])


def train_gan(
    data: Any,
    out: Any,
    epochs: int = 20,
    seed: int = 0,
    callback: Callable[[int, int], Any] | None = None,
    *,
    schema: ConditionSchema | None = None,
    batch_size: int = 32,
    lr_g: float = 2e-4,
    lr_d: float = 4e-4,
    latent_dim: int = 64,
    width: int = 16,
    d_width: int | None = None,
    ema: float = 0.999,
    name: str = "phantomcxr-gan",
    weights_dtype: str = "float16",
    max_seconds: float | None = None,
    init_from: Any = None,
    mismatch_weight: float = 0.5,
    log: Callable[[str], Any] | None = None,
) -> TrainingResult:
    """Train a conditional GAN on an ImageSet and save the generator as a checkpoint.

    Hinge loss, Adam with betas (0, 0.9), a faster discriminator learning
    rate, and an exponential moving average of the generator weights (the
    averaged weights are saved).

    Parameters
    ----------
    data : ImageSet
        Training images (1, 64, 64) with metadata columns ``age``, ``sex``
        and one 0/1 column per finding (or a ``findings`` list column).
    out : path-like
        Output ``.safetensors`` file.
    epochs : int
    seed : int
    callback : callable(done_steps, total_steps), optional
        Return ``False`` to cancel (raises :class:`CancelledError`; nothing is saved).
    schema : ConditionSchema, optional
        Defaults to :func:`phantomcxr_schema`.
    batch_size, lr_g, lr_d, latent_dim, width, d_width, ema : settings
    name : str
    weights_dtype : {"float16", "float32"}
        Storage type of the floating-point weights.
    max_seconds : float, optional
        Stop after the first epoch that ends past this wall-clock budget; the
        card records the epochs actually run.
    init_from : path-like or GANGenerator, optional
        A GAN of the same architecture whose generator weights start the run
        (the discriminator starts fresh). Its SHA-256 goes in the card
        (``training.initialised_from``), its run in ``training.previous_runs``,
        and ``training.total_time_seconds`` adds up every run.
    mismatch_weight : float
        Weight of the loss term that shows the discriminator real images with
        shuffled conditions as fakes (pushes the generator to follow conditions).
    log : callable(str), optional
        Receives one progress line per epoch.

    Returns
    -------
    TrainingResult
        ``(generator, card)``: the :class:`GANGenerator` loaded back from
        ``out``, and the saved model card plus ``"sha256"`` of the file.

    Examples
    --------
    >>> from medsynth_explore.phantom import simulate  # doctest: +SKIP
    >>> gen, card = train_gan(simulate(256, seed=0), "gan.safetensors", epochs=1)  # doctest: +SKIP
    """
    import torch

    run = image_training_set(data, out, epochs, batch_size, schema, seed, latent_dim, width)
    x_all, cond = run.images, run.cond
    G = build_gan_generator(**run.arch)
    D = build_gan_discriminator(
        image_size=run.arch["image_size"], channels=1, width=int(d_width or width), cond_dim=int(run.schema.width)
    )
    init_sha = init_card = None
    if init_from is not None:
        state, init_sha, init_card = _init_generator(init_from, run.arch)
        G.load_state_dict(state)
    G_ema = ParameterEMA(G, ema, formula="lerp", buffers_each_update=True)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr_g, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr_d, betas=(0.0, 0.9))
    gen = torch.Generator().manual_seed(seed)
    loop = TrainingLoop(run.total_steps, callback, max_seconds, log)

    def step(idx):
        x, c = x_all[idx], cond[idx]
        b = len(idx)
        # discriminator step (conditions of the fakes: those of the real batch)
        z = torch.randn((b, latent_dim), generator=gen)
        with torch.no_grad():
            fake = G(z, c)
        d_loss = torch.relu(1.0 - D(x, c)).mean() + torch.relu(1.0 + D(fake, c)).mean()
        # conditional mismatch: real images with shuffled conditions count as fake
        shuf = c[torch.randperm(b, generator=gen)]
        d_loss = d_loss + mismatch_weight * torch.relu(1.0 + D(x, shuf)).mean() * float((shuf != c).any())
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # generator step
        z = torch.randn((b, latent_dim), generator=gen)
        g_loss = -D(G(z, c), c).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        G_ema.update()
        return {"d": float(d_loss.detach()), "g": float(g_loss.detach())}

    def summary(epoch, m):
        return {"epoch": epoch, "d_loss": round(m["d"], 4), "g_loss": round(m["g"], 4)}, f"D {m['d']:.3f}, G {m['g']:.3f}"

    G.train()
    history = loop.run_epochs(run.epochs, lambda epoch: epoch_batches(len(x_all), run.batch_size, gen), step, summary)
    _recompute_batch_norm(G_ema.model, cond, latent_dim, run.batch_size, gen)
    card = image_model_card(
        name,
        "gan",
        run,
        data,
        loop,
        seed,
        description="Conditional DCGAN-style GAN (conditional batch norm generator, projection discriminator, hinge "
        "loss) for 64x64 single-channel chest radiographs.",
        capabilities=["conditions"] if len(run.schema) else [],
        training={
            "optimizer": "Adam(betas=(0, 0.9))",
            "lr_generator": lr_g,
            "lr_discriminator": lr_d,
            "loss": f"hinge, plus real images with shuffled conditions as negatives (weight {mismatch_weight})",
            "initialised_from": init_sha,
            "ema_decay": ema,
            "discriminator_width": int(d_width or width),
        },
        sampler_defaults={"sampler": "gan", "truncation": 1.0},
        limitations=[
            "A small GAN trained briefly on a CPU: expect artefacts, some mode collapse and weak rare findings.",
            "No inpainting.",
        ],
        metrics={"final_d_loss": history[-1]["d_loss"], "final_g_loss": history[-1]["g_loss"]},
    )
    tr = card["training"]
    tr["previous_runs"] = _previous_runs(init_card, init_sha)
    tr["total_time_seconds"] = duration(tr["time_seconds"] + sum(float(r.get("time_seconds", 0)) for r in tr["previous_runs"]))
    ck, card = save_and_reload(run.out, G_ema.model.state_dict(), card, weights_dtype)
    return TrainingResult(GANGenerator.from_checkpoint(ck), card)


def _recompute_batch_norm(net: Any, cond: Any, latent_dim: int, batch_size: int, gen: Any) -> None:
    """Batch-norm running statistics of the averaged weights, from up to 2,048 seeded latents."""
    import torch

    net.train()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        n = len(cond)
        for a in range(0, min(n, 2048), batch_size):
            idx = torch.arange(a, min(n, a + batch_size))
            net(torch.randn((len(idx), latent_dim), generator=gen), cond[idx])
    net.eval()
