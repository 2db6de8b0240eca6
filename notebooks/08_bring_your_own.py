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
