# %% [markdown]
# # 00 · Quickstart: the Explorer in three lines
#
# **What.** `medsynth_explore` treats an image generator as a *data set*: you draw
# images from it, look at them next to real ones and measure how close they are.
# Everything here runs offline on a CPU with the embedded default, **PhantomCXR**, a
# physics-based simulator of chest radiographs. It serves as the "real" reference data
# and as a generator in its own right (`phantomcxr-physics`).
#
# **Why.** Before a synthetic data set is used for training or sharing, someone has to
# see it and measure it: does it look right, does it cover every patient group, does it
# copy its training images? The Explorer puts all of that in one window.
#
# Which generators are installed on this machine:

# %%
import medsynth_explore as mse

mse.list_generators()[["name", "family", "available"]]

# %% [markdown]
# The three lines: import, then `explore`. `n_reference` is the number of simulated
# "real" radiographs the generator is compared with (kept small so this runs in seconds).
# The app has tabs for generating, inpainting, embeddings, live metrics, fairness,
# the speed/quality trade-off, privacy, the model card and a visual Turing test.

# %%
import medsynth_explore as mse
app = mse.explore(generator="phantomcxr-physics", reference="phantomcxr", n_reference=200)
app

# %% [markdown]
# Everything the app shows lives in `app.session`, so it can also be reached from
# Python. The reference set is an `ImageSet`: images of shape (N, C, H, W) in [0, 1]
# plus one metadata row per image. Because the simulator knows the truth, every image
# carries its labels: age, sex, site and findings.

# %%
# NBVAL_CHECK_OUTPUT
ref = app.session.reference
print(ref.images.shape, ref.images.dtype)
print(ref.metadata[["cardiomegaly", "nodule", "effusion", "pneumothorax"]].mean().round(3).to_string())

# %% [markdown]
# Draw 200 images from the active generator (the same `seed` always gives the same
# images). An `ImageSet` shows itself as a grid of its first images with their labels;
# `samples[:8]` is a set of eight.

# %%
samples = app.session.generate(200, seed=0)
samples[:8]

# %% [markdown]
# Now the distribution metrics, as the *Live metrics* tab shows them (the session
# keeps running statistics, so this is instant). FID and KID are distances (lower is
# better); precision, recall, density and coverage are shares (higher is better).
# Their values depend on the feature encoder: the domain CLIP when it is installed
# (128 numbers per image), otherwise downsampled pixels (tutorial 04 explains this).
# The 200 reference and 200 synthetic images are more than the encoder has
# dimensions, as FID needs (tutorial 04 shows what happens with fewer).

# %%
print(app.session.encoder.id, app.session.encoder.dim)
{k: round(v, 3) for k, v in app.session.live_metrics().items()}

# %% [markdown]
# ## Try this
#
# - Open the *Generate* tab above, set `findings` to *effusion* and press Generate;
#   the *Live metrics* tab updates as the samples arrive.
# - Add a shipped model: `mse.explore(generator=["phantomcxr-physics", "phantomcxr-vae"], n_reference=200)`
#   and compare them in the *Trilemma* tab.
