# %% [markdown]
# # 07 · The generative trilemma: speed, quality, diversity
#
# **What.** Generative models trade three things: **speed** of sampling,
# **quality** (fidelity: FID, precision) and **diversity** (recall, coverage).
# GANs are fast and sharp but drop modes; VAEs are fast and diverse but blurry;
# diffusion models are good at both but slow; a physics simulator is exact where its
# physics is, but only as diverse as its parameters.
#
# **How.** Load every installed generator into one `Session`, draw the same number of
# images from each, and measure all three on this machine. Speeds are wall-clock
# numbers of *this* run, so they change from machine to machine.

# %%
import plotly.express as px

import medsynth_explore as mse
from medsynth_explore.session import Session

wanted = ["phantomcxr-physics", "phantomcxr-vae", "phantomcxr-gan", "phantomcxr-diffusion"]
available = mse.list_generators().set_index("name")["available"]
names = [n for n in wanted if available[n]]
missing = [n for n in wanted if not available[n]]
print("compared:", names)
print("not installed (train them to include them):", missing)

# %%
session = Session(reference="phantomcxr", generators=names, n_reference=300, encoder="pixels", seed=0)
result = session.trilemma(n=48, seed=0)
result.round(3)

# %% [markdown]
# Read the table: `images_per_s` is speed (higher is faster), `fid` and `precision`
# are quality, `recall` and `coverage` diversity. With 48 images the intervals are wide;
# the ordering matters more than the third digit. FID warns above: 48 images in the 256
# dimensions of these pixel features is the rank-deficient case of tutorial 04, so its
# values are inflated and only comparable with each other (same N, same encoder).

# %%
px.scatter(result, x="images_per_s", y="coverage", size="precision", color="generator", log_x=True,
           hover_data=["fid", "recall"], title="speed vs diversity (marker size: precision)").show()

# %% [markdown]
# Numbers summarise; look at the images behind them too. Six samples of each generator
# with the same seed: sharpness (quality) and how different the six are (diversity).

# %%
from medsynth_explore.data.display import image_table

image_table({name: {"6 samples, seed 0": session.generators[name].sample(6, seed=0).images} for name in names},
            corner="generator", width=88)

# %% [markdown]
# ## Try this
#
# - Raise `n` to 200 and see which differences survive.
# - For the diffusion model, sampling steps trade speed for quality:
#   `mse.load_generator("phantomcxr-diffusion").sample(48, steps=10, seed=0)`.
# - The Explorer's *Trilemma* tab shows the same table live: `mse.explore(generator=names, n_reference=300)`.
