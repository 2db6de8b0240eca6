"""Generators: one protocol for the diffusion model, VAE, GAN, physics simulator and diffusers pipelines.

Examples
--------
>>> from medsynth_explore.generators import load_generator, list_generators
>>> g = load_generator("phantomcxr-physics")
>>> g.sample(2, conditions={"age": 60}, seed=0).metadata["age"].tolist()
[60.0, 60.0]
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import CAPABILITIES, Generator, image_seeds, randn_per_image, torch_generators
from .conditions import Condition, ConditionSchema, condition_distribution, draw_conditions, encode_conditions, phantomcxr_schema
from .registry import BUILTIN_GENERATORS, list_generators, load_generator

_LAZY = {
    "VAEGenerator": "medsynth_explore.generators.vae:VAEGenerator",
    "train_vae": "medsynth_explore.generators.vae:train_vae",
    "GANGenerator": "medsynth_explore.generators.gan:GANGenerator",
    "train_gan": "medsynth_explore.generators.gan:train_gan",
    "PhysicsGenerator": "medsynth_explore.generators.physics:PhysicsGenerator",
    "TrainingResult": "medsynth_explore.generators._training:TrainingResult",
    "train_diffusion": "medsynth_explore.generators.diffusion:train_diffusion",
    "DiffusersPipelineGenerator": "medsynth_explore.generators.diffusers_pipeline:DiffusersPipelineGenerator",
}

__all__ = [
    "BUILTIN_GENERATORS",
    "CAPABILITIES",
    "Condition",
    "ConditionSchema",
    "Generator",
    "condition_distribution",
    "draw_conditions",
    "encode_conditions",
    "image_seeds",
    "list_generators",
    "load_generator",
    "phantomcxr_schema",
    "randn_per_image",
    "torch_generators",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'medsynth_explore.generators' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
