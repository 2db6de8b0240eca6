"""The PhantomCXR findings and sex are learnable from 64x64 images by a small CNN."""

from __future__ import annotations

import numpy as np
import pytest

from medsynth_explore.phantom import FINDINGS, Population, simulate

torch = pytest.importorskip("torch")
roc_auc_score = pytest.importorskip("sklearn.metrics").roc_auc_score

TARGETS = (*FINDINGS, "sex")


def _targets(meta) -> np.ndarray:
    cols = [meta[f].to_numpy(float) for f in FINDINGS] + [(meta["sex"] == "F").to_numpy(float)]
    return np.stack(cols, 1).astype(np.float32)


@pytest.mark.slow
def test_small_cnn_learns_every_finding_and_sex():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    # balanced-ish labels so every target has enough positives; no chest tubes so
    # the pneumothorax must be seen, not guessed from the tube
    pop = Population(
        prevalence={f: 0.3 for f in FINDINGS},
        chest_tube_given_pneumothorax=0.0,
        chest_tube_given_no_pneumothorax=0.0,
    )
    train = simulate(2000, seed=100, size=64, population=pop)
    test = simulate(600, seed=200, size=64, population=pop)
    xtr, ytr = torch.from_numpy(train.images), torch.from_numpy(_targets(train.metadata))
    xte, yte = torch.from_numpy(test.images), _targets(test.metadata)
    mean, std = xtr.mean(), xtr.std()
    xtr, xte = (xtr - mean) / std, (xte - mean) / std

    def block(cin, cout):
        return [torch.nn.Conv2d(cin, cout, 3, padding=1), torch.nn.BatchNorm2d(cout), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]

    class Net(torch.nn.Module):
        # global max pooling next to average pooling, so a small nodule anywhere counts
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(
                *block(1, 16), *block(16, 32), *block(32, 48),
                torch.nn.Conv2d(48, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(),
            )  # fmt: skip
            self.head = torch.nn.Linear(128, len(TARGETS))

        def forward(self, x):
            h = self.body(x)
            return self.head(torch.cat([h.amax((2, 3)), h.mean((2, 3))], 1))

    net = Net()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    epochs, bs = 20, 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * ((len(xtr) + bs - 1) // bs))
    # the nodule is the smallest, subtlest target: weight it up
    loss_fn = torch.nn.BCEWithLogitsLoss(weight=torch.tensor([1.0, 3.0, 1.0, 1.0, 1.0]))
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), bs):
            j = perm[i : i + bs]
            opt.zero_grad()
            loss = loss_fn(net(xtr[j]), ytr[j])
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        scores = torch.cat([net(xte[i : i + 200]) for i in range(0, len(xte), 200)]).numpy()
    aucs = {name: roc_auc_score(yte[:, k], scores[:, k]) for k, name in enumerate(TARGETS)}
    print("held-out AUROC:", {k: round(v, 3) for k, v in aucs.items()})
    for name, auc in aucs.items():
        assert auc >= 0.9, f"{name}: AUROC {auc:.3f} < 0.9 ({aucs})"
