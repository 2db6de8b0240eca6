# %% [markdown]
# # 05 · Fairness: find a subgroup gap, close part of it with synthetic data
#
# **What.** Train a classifier on a cohort in which one group is rare, then measure its
# performance *per subgroup*. Then add synthetic images of the under-represented group
# ("targeted oversampling") and measure again.
#
# Here women make up only 2 % of the training cohort, built with
# `Population(subgroup_shares={"sex == 'F'": 0.02})`. Any pandas query works as a
# group, e.g. `"sex == 'F' and age > 70"` (see *Try this*).
#
# **How to read the numbers.** AUROC per group with a bootstrap 95 % interval. A gap
# counts only if the intervals say so; small test groups give wide intervals.

# %%
import numpy as np

import medsynth_explore as mse
from medsynth_explore.features import PixelEncoder
from medsynth_explore.phantom import Population, simulate

GROUP = "sex == 'F'"
FINDING = "pneumothorax"
train = simulate(800, seed=1, population=Population(subgroup_shares={GROUP: 0.02}))
test = simulate(600, seed=2, population=Population(prevalence={FINDING: 0.3}, subgroup_shares={GROUP: 0.5}))
n_train, n_test = int(train.metadata.eval(GROUP).sum()), int(test.metadata.eval(GROUP).sum())
print(f"group in training: {n_train} of {len(train)}; in the test set: {n_test} of {len(test)}")

# %% [markdown]
# The classifier: logistic regression on 32 x 32 pixels, predicting pneumothorax.
# `fit_logistic` fits scikit-learn's `LogisticRegression` on the encoder's features.
# `per_group_auroc` scores the test set inside the group and outside it; its interval
# resamples the test rows of each part 200 times (resamples with a single class are
# skipped) and keeps the central 95 % of the AUROCs. Run `per_group_auroc??` to read it.

# %%
from medsynth_explore.tutorial import fit_logistic, per_group_auroc

enc = PixelEncoder(size=32)
X_test = enc.encode(test.images)
y_test = test.metadata[FINDING].to_numpy()
in_group = test.metadata.eval(GROUP).to_numpy()

# %%
# NBVAL_CHECK_OUTPUT
biased = fit_logistic(enc, train.images, train.metadata[FINDING])
before = per_group_auroc(y_test, biased.predict_proba(X_test)[:, 1], in_group)
print(before.round(2))
print(f"gap (everyone else - group): {before.AUROC['everyone else'] - before.AUROC['group']:+.2f}")

# %% [markdown]
# Women's radiographs differ (breast shadows over the lower lungs, smaller lungs), and
# a classifier that saw 16 of them does not transfer well.
#
# ## Targeted synthetic oversampling
#
# Ask a generator for 200 images of women of all ages, with findings drawn from the
# training distribution, and add them to the training set. The physics generator is
# used here; any conditional model works the same way (try `"phantomcxr-vae"`).

# %%
gen = mse.load_generator("phantomcxr-physics")
rng = np.random.default_rng(0)
k = 200
extra = gen.sample(k, conditions={"sex": "F", "age": rng.uniform(20, 90, k).round(1).tolist()}, seed=3)
print(extra.metadata["sex"].value_counts().to_dict(), f"{FINDING} in {int(extra.metadata[FINDING].sum())} images")
extra.show(n=6, by=FINDING)

# %%
# NBVAL_CHECK_OUTPUT
augmented = fit_logistic(enc, np.concatenate([train.images, extra.images]),
                         np.concatenate([train.metadata[FINDING].to_numpy(), extra.metadata[FINDING].to_numpy()]))
after = per_group_auroc(y_test, augmented.predict_proba(X_test)[:, 1], in_group)
print(after.round(2))
print(f"gap (everyone else - group): {after.AUROC['everyone else'] - after.AUROC['group']:+.2f}")

# %% [markdown]
# The same numbers as a forest plot: each line is an AUROC with its 95 % interval,
# before (blue) and after (orange) adding the synthetic images. The group's line moves
# right, but its two intervals still overlap: with 300 test images per group this is
# a likely improvement, not a certain one. Everyone else stays near 1.

# %%
from medsynth_explore.tutorial import forest_plot

label = {"group": f"group ({GROUP})"}
forest_plot({"before": before.rename(index=label), "after": after.rename(index=label)},
            title=f"AUROC for {FINDING}, by group, with 95% bootstrap intervals")

# %% [markdown]
# Read the result with the intervals: the group's AUROC rises and the gap shrinks,
# while everyone else keeps theirs. Part of the gap remains: 200 extra images do not
# make up for a cohort of 784 men. Extra data for the group is also simply more data:
# add 200 images drawn from the *whole* population instead to separate the two effects.
#
# The `Fairness` tab of the Explorer (and `Session.fairness`) shows distribution
# metrics of a generator per subgroup in the same way.
#
# ## Try this
#
# - Add 200 untargeted images (`gen.sample(200, seed=3)`) instead and compare.
# - Make old women the rare group: `GROUP = "sex == 'F' and age > 70"` (and draw ages 71-90).
#   On PhantomCXR that gap is much smaller: a rare group is not always a disadvantaged one. Measure before you fix.
# - Change `FINDING` to `"effusion"`, or use `"phantomcxr-vae"` as the generator: does a model
#   trained on an unbiased cohort make images that help as much as the simulator's?
