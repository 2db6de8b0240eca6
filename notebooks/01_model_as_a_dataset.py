# %% [markdown]
# # 01 · A model as a data set: card, hash, export, provenance
#
# **What.** A trained generator can stand in for a data set: share the weights, and
# anyone can draw as many images as they need. For that to be trustworthy, each
# synthetic image must be traceable to *exactly* the model and the settings that made it.
#
# **How.** Every shipped checkpoint is one `.safetensors` file whose header carries a
# **model card** (what it was trained on, how, its limitations). Its **SHA-256** names
# the exact weights. `export` writes images together with a manifest of hashes and the
# generator's identity; `verify` checks a folder against it later.

# %%
import tempfile
from pathlib import Path

import medsynth_explore as mse
from medsynth_explore.checkpoint import file_sha256, format_card
from medsynth_explore.export import export, verify

gen = mse.load_generator("phantomcxr-vae")
gen  # shows the card in brief: what it can do and which conditions it takes

# %% [markdown]
# The model card, as Markdown text. Read *Known limitations* before you use any model.

# %%
print(format_card(gen.card))

# %% [markdown]
# `gen.sha256` is the hash of the checkpoint file; anyone can recompute it from the
# file on disk. If the two differ, the weights are not the ones the card describes.

# %%
# NBVAL_CHECK_OUTPUT
print(len(gen.sha256), gen.sha256 == file_sha256(gen.path))

# %% [markdown]
# ## Draw a data set
#
# `sample` returns an `ImageSet`. The metadata holds the requested conditions and the
# provenance of every image: generator name, checkpoint hash, seed and the per-image
# seed, so a single image can be regenerated on its own.

# %%
ds = gen.sample(16, conditions={"sex": "F", "findings": ["effusion"]}, seed=0)
ds.metadata[["age", "sex", "effusion", "generator", "checkpoint_sha256", "seed", "image_seed"]].head()

# %% [markdown]
# Look at what the model makes before measuring anything. An `ImageSet` displays
# itself as a grid with the requested conditions under each image:

# %%
ds

# %% [markdown]
# The same model asked for each finding in turn (four images each, 60 years old) beside
# real PhantomCXR images with that finding alone. `image_table` puts them side by side.

# %%
from medsynth_explore.data.display import image_table

names = ["cardiomegaly", "nodule", "effusion", "pneumothorax"]
real = mse.load_dataset("phantomcxr", n=300, seed=0)
n_found = real.metadata[names].sum(axis=1)
asked = {"no finding": []} | {f: [f] for f in names}
made = gen.sample(20, conditions={"age": 60, "findings": [f for f in asked.values() for _ in range(4)]}, seed=1)
table = {}
for i, (label, f) in enumerate(asked.items()):
    alone = (n_found == 0) if not f else (n_found == 1) & (real.metadata[f[0]] == 1)
    table[label] = {"real (PhantomCXR)": real.images[alone.to_numpy()][:4],
                    "phantomcxr-vae": made.images[4 * i : 4 * i + 4]}
image_table(table, corner="finding", width=80)

# %% [markdown]
# Read the pictures before the numbers: this small VAE draws smooth, blurred chests.
# Its cardiomegaly widens the heart and its effusions are faint, and its "nodule" images
# show no nodule at all, as the card's limitations and the README's benchmark (nodule
# AUROC 0.48) say.

# %% [markdown]
# ## Export with provenance, verify, load back
#
# `export` writes labelled 16-bit PNG files (each carries an "AI-generated" tag), a
# metadata table and `manifest.json` with the hash of every file. Shards are seeded
# from the run seed, so the same call always writes the same bytes.

# %%
work = Path(tempfile.mkdtemp(prefix="medsynth-tutorial-"))
out = export(gen, n=32, out=work / "vae-effusion", conditions={"findings": ["effusion"]}, seed=0, shard_size=16)
sorted(p.name for p in out.iterdir())

# %%
result = verify(out)
print(result.ok)
print(result)

# %% [markdown]
# Exporting again with the same seed reproduces every file byte for byte (the image
# hashes in the two manifests agree). Tampering with a file would make `verify` fail.

# %%
# NBVAL_CHECK_OUTPUT
import json

again = export(gen, n=32, out=work / "vae-effusion-again", conditions={"findings": ["effusion"]}, seed=0, shard_size=16)
files = lambda folder: json.loads((folder / "manifest.json").read_text())["files"]
print(files(out) == files(again), verify(again).ok)

# %% [markdown]
# The exported folder is an ordinary data set: `load_dataset` reads it back with its
# metadata. The 16-bit PNG files round the images to 1/65535.

# %%
# NBVAL_CHECK_OUTPUT
back = mse.load_dataset(out)
print(len(back), back.images.shape[1:], int(back.metadata["effusion"].sum()))
print(back.metadata["generator"].unique().tolist(), (back.metadata["checkpoint_sha256"] == gen.sha256).all())

# %% [markdown]
# ## Try this
#
# - Change one byte of a PNG in the export folder and run `verify(out)` again.
# - Export from `"phantomcxr-gan"` and compare its card with the VAE's.
# - The same from a shell: `medsynth generate phantomcxr-vae --n 100 --out data/vae` then `medsynth verify data/vae`.
