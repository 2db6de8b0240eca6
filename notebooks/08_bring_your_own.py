# %% [markdown]
# # 08 · Bring your own data and models
#
# **What.** Everything in the earlier tutorials works on your data: a folder of images
# with a CSV, a MedMNIST `.npz`, a folder of DICOM files, and generators from
# diffusers. This notebook makes a tiny example of each, so it runs anywhere.
#
# **Offline.** Nothing is downloaded. A hub id that is not in the local cache fails
# with an `OfflineError` that says what to fetch and where to put it.

# %%
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

import medsynth_explore as mse

work = Path(tempfile.mkdtemp(prefix="medsynth-byo-"))
rng = np.random.default_rng(0)

# %% [markdown]
# ## A folder of images with a CSV
#
# One `metadata.csv` with a `filename` column; every other column becomes metadata.

# %%
# NBVAL_CHECK_OUTPUT
folder = work / "pngs"
folder.mkdir()
rows = []
for i in range(6):
    img = (rng.random((32, 32)) * 255).astype(np.uint8)
    Image.fromarray(img).save(folder / f"img{i}.png")
    rows.append({"filename": f"img{i}.png", "age": 40 + 5 * i, "sex": "FM"[i % 2]})
pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)

ds = mse.load_dataset(folder)
print(ds.images.shape, ds.images.dtype, float(ds.images.min()) >= 0, float(ds.images.max()) <= 1)
print(ds.metadata[["filename", "age", "sex"]].head(3).to_string())

# %% [markdown]
# Look at your images before measuring anything (here random noise, since this example
# makes its images up); `show` captions them with the columns you choose:

# %%
ds.show(columns=["filename", "age", "sex"])

# %% [markdown]
# ## A MedMNIST `.npz`
#
# MedMNIST files hold `train_images`, `train_labels`, `val_...`, `test_...` as uint8.

# %%
# NBVAL_CHECK_OUTPUT
npz = work / "tiny_pneumoniamnist.npz"
arrays = {}
for split, n in [("train", 8), ("val", 2), ("test", 4)]:
    arrays[f"{split}_images"] = (rng.random((n, 28, 28)) * 255).astype(np.uint8)
    arrays[f"{split}_labels"] = rng.integers(0, 2, (n, 1))
np.savez(npz, **arrays)

mnist = mse.load_dataset(npz)
print(mnist.images.shape, mnist.metadata["split"].value_counts().sort_index().to_dict())
print(len(mse.load_dataset(npz, split="test")))

# %% [markdown]
# ## A DICOM folder
#
# Pixel data is scaled by its stored bit depth; PatientAge and PatientSex become
# `age` and `sex`. Here we write three small 12-bit files with pydicom.

# %%
# NBVAL_CHECK_OUTPUT
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

dicom_dir = work / "dicom"
dicom_dir.mkdir()
for i, (age, sex) in enumerate([("045Y", "F"), ("063Y", "M"), ("081Y", "F")]):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    d = FileDataset(str(dicom_dir / f"{i}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    d.SOPClassUID, d.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    d.PatientAge, d.PatientSex, d.Modality = age, sex, "DX"
    d.Rows = d.Columns = 32
    d.SamplesPerPixel, d.PhotometricInterpretation = 1, "MONOCHROME2"
    d.BitsAllocated, d.BitsStored, d.HighBit, d.PixelRepresentation = 16, 12, 11, 0
    d.PixelData = (rng.random((32, 32)) * 4095).astype(np.uint16).tobytes()
    d.save_as(dicom_dir / f"{i}.dcm", enforce_file_format=True)

dcm = mse.load_dataset(dicom_dir)
print(dcm.images.shape, dcm.metadata[["age", "sex"]].to_dict("list"))

# %% [markdown]
# Bad input gets a `DataError` that says what is wrong and how to fix it:

# %%
# NBVAL_CHECK_OUTPUT
(work / "no_csv").mkdir()
Image.fromarray(np.zeros((8, 8), np.uint8)).save(work / "no_csv" / "a.png")
try:
    mse.load_dataset(work / "no_csv")
except mse.DataError as err:
    print("DataError:", str(err).replace(str(work), "<work>"))

# %% [markdown]
# ## A diffusers pipeline folder
#
# Any local diffusers pipeline folder (with `model_index.json`) loads as a generator.
# Here a tiny, untrained DDPM, so the images are noise, but the whole protocol works:
# seeds, metadata with the folder's hash, the same metrics.

# %%
# NBVAL_CHECK_OUTPUT
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

torch.manual_seed(0)
unet = UNet2DModel(sample_size=16, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                   down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                   norm_num_groups=4)
DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=20)).save_pretrained(work / "tiny-ddpm")

g = mse.load_generator(work / "tiny-ddpm")
a = g.sample(3, seed=0, steps=4)
b = g.sample(3, seed=0, steps=4)
print(type(g).__name__, sorted(g.capabilities), g.image_shape)
print("same seed, same images:", bool(np.allclose(a.images, b.images, atol=1e-5)))

# %% [markdown]
# ## A Stable Diffusion text pipeline (the layout RoentGen is published in)
#
# A text-to-image pipeline folder (`model_index.json`, `unet/`, `vae/`, `text_encoder/`,
# `tokenizer/`, `scheduler/`) loads the same way; it needs `transformers`
# (`pip install "medsynth-explore[models]"`). It takes the model's own condition schema:
# `schema=` when you load it, or a `conditions.json` beside `model_index.json`, else the
# ready CheXpert schema (14 findings, sex, age, race: the label vocabulary of the real-data
# loaders). Conditions become each image's prompt, and an explicit `prompt=` replaces it.
# Here a tiny random-weight pipeline with a tokenizer written on the spot, so it makes noise.

# %%
# NBVAL_CHECK_OUTPUT
from medsynth_explore.generators.tiny import write_monai_bundle, write_stable_diffusion

sd = mse.load_generator(write_stable_diffusion(work / "tiny-sd", size=64), default_steps=4)
print(type(sd).__name__, sd.image_shape, sorted(sd.capabilities))
print("conditions:", sd.conditions.names)
print("findings:", ", ".join(sd.conditions.finding_names))
out = sd.sample(2, conditions={"age": [45, 81], "sex": "F", "race": "Black", "findings": ["pleural_effusion"]}, seed=0)
for prompt in out.metadata["prompt"]:
    print(prompt)

# %% [markdown]
# A pipeline trained on other labels says so in `conditions.json`, with a prompt template
# in its own words (fields: `{age}`, `{sex}`, `{race}`, `{patient}`, `{findings}` and any
# condition):

# %%
# NBVAL_CHECK_OUTPUT
import json

(work / "tiny-sd" / "conditions.json").write_text(json.dumps({
    "schema": "chexpert", "races": None,
    "prompt_template": "chest x-ray, {patient}, {findings}",
}))
own = mse.load_generator(work / "tiny-sd", default_steps=4)
print(own.conditions.names)
print(own.sample(1, conditions={"age": 60, "sex": "M", "findings": ["cardiomegaly", "edema"]}, seed=0).metadata["prompt"][0])

# %% [markdown]
# Each denoising step is reported (`step_callback`, the Explorer's progress bar), so a slow
# 512 px pipeline shows where it is and a Cancel stops it between two steps, not only between
# batches. `device="cuda"` and `dtype="float16"` run it on a GPU in half precision.

# %%
# NBVAL_CHECK_OUTPUT
steps = []
sd.sample(2, seed=0, steps=3, step_callback=lambda s: steps.append(f"{s.step}/{s.steps}"))
print("steps reported:", steps)

# %% [markdown]
# ## A MONAI bundle
#
# MONAI publishes its generative models as bundles: `configs/metadata.json`,
# `configs/inference.json` (or `.yaml`) and `models/model.pt`. The network, scheduler and
# inferer are built by MONAI's own config parser from the bundle's definitions (only MONAI
# classes, no `$` expressions: a bundle config is code, and is not run); weights load with
# `weights_only=True`; image size and value range come from `metadata.json`. Here a tiny DDPM
# in the `mednist_ddpm` layout:

# %%
# NBVAL_CHECK_OUTPUT
bundle = write_monai_bundle(work / "tiny-bundle", kind="ddpm", size=32)
print(sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()))
mb = mse.load_generator(bundle)
arch = mb.card["architecture"]
print(type(mb).__name__, mb.image_shape, arch["network"], arch["inferer"], mb.card["sampler_defaults"])
x = mb.sample(3, seed=0, steps=5)
print(x.images.shape, "same seed, same images:", bool(np.allclose(x.images, mb.sample(3, seed=0, steps=5).images)))

# %% [markdown]
# ## The real models: what to fetch, and where to put it
#
# Weights cannot be downloaded from here. On a machine with internet access, fetch them
# into a models folder, copy that folder to this machine, and point `MEDSYNTH_MODELS` at it
# (default `~/.cache/medsynth-explore/models`):
#
# ```bash
# export MEDSYNTH_MODELS=~/models
# # RAD-DINO (CheXGenBench computes FID and PRDC on its features)
# huggingface-cli download microsoft/rad-dino config.json model.safetensors preprocessor_config.json \
#     --local-dir $MEDSYNTH_MODELS/rad-dino
# # BiomedCLIP (the medical CLIPScore), and the config of its PubMedBERT text tower
# huggingface-cli download microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224 --local-dir $MEDSYNTH_MODELS/biomedclip
# huggingface-cli download microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract config.json vocab.txt \
#     --local-dir $MEDSYNTH_MODELS/biomedclip/text
# # TorchXRayVision DenseNet-121 (all data sets)
# f=nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt
# mkdir -p $MEDSYNTH_MODELS/xrv-densenet121 && curl -L -o $MEDSYNTH_MODELS/xrv-densenet121/$f \
#     https://github.com/mlmed/torchxrayvision/releases/download/v1/$f
# # RoentGen (a Stable Diffusion pipeline folder; accept its terms on the hub first)
# huggingface-cli download StanfordAIMI/roent-gen-v1-0 --local-dir ~/models/roentgen
# # a MONAI generative bundle
# python -m monai.bundle download --name brats_mri_axial_slices_generative_diffusion --bundle_dir ~/models/bundles
# ```
#
# Then `mse.get_encoder("rad-dino")`, `mse.get_encoder("biomedclip", allow_pickle=True)`,
# `mse.get_encoder("xrv-densenet121", allow_pickle=True)` (its weights are pickled modules:
# the flag is required and the file is read by a restricted unpickler),
# `mse.load_generator("~/models/roentgen", device="cuda", dtype="float16")` and
# `mse.load_generator("~/models/bundles/brats_mri_axial_slices_generative_diffusion")`.
# A model that is not there says which files are missing and the command that fetches them:

# %%
# NBVAL_CHECK_OUTPUT
import os

os.environ["MEDSYNTH_MODELS"] = str(work / "models")
try:
    mse.get_encoder("rad-dino")
except mse.OfflineError as err:
    print("OfflineError:", str(err).replace(str(work), "<work>"))

# %% [markdown]
# ## A hub id, offline
#
# `load_generator("org/model")` looks only in the local Hugging Face cache. Offline,
# a model that is not there raises `OfflineError` with the command to fetch it
# on a machine with network access; this is the documented behaviour, not a fallback.

# %%
try:
    mse.load_generator("example-org/chest-xray-diffusion")
except mse.OfflineError as err:
    print("OfflineError:", err)

# %% [markdown]
# ## Use them
#
# Every loaded set is an `ImageSet`, so the rest of the package applies, e.g.
# `mse.evaluate(real, synthetic, encoder="pixels")`, or
# `mse.explore(generator=str(work / "tiny-ddpm"), reference=folder)` for the Explorer.
#
# ## Try this
#
# - Load the real PneumoniaMNIST file if you have it: `mse.load_dataset("pneumoniamnist.npz", split="test")`.
# - Write a PhantomCXR set to a folder with `mse.load_dataset("phantomcxr", n=50).to_folder("my_folder")`
#   and open the CSV.
# - Pass your own checkpoint path to `mse.load_generator`: safetensors files with a model card load directly.
# - Open the Explorer on the text pipeline above: `mse.explore(generator=sd, encoder="pixels")`; its Generate
#   panel offers the 14 CheXpert findings, sex, age and race.
