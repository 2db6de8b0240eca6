"""The session's parts: sample stores that evict in step, an event bus with removable subscriptions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medsynth_explore.data import ImageSet
from medsynth_explore.errors import DataError, MedsynthError
from medsynth_explore.metrics import StreamingFID
from medsynth_explore.session import EventBus, SampleStore, Session


def _set(n, value=None, seed=0, size=8):
    rng = np.random.default_rng(seed)
    images = (
        rng.random((n, 1, size, size)).astype(np.float32) if value is None else np.full((n, 1, size, size), value, np.float32)
    )
    return ImageSet(images, pd.DataFrame({"i": np.arange(n), "sex": ["F", "M"] * (n // 2) + ["F"] * (n % 2)}))


def test_append_evicts_images_features_and_coords_together():
    store = SampleStore("g", max_samples=5)
    assert len(store) == 0 and store.images is None
    assert store.append(_set(3), np.arange(6.0).reshape(3, 2)).evicted == 0
    store.set_coords(np.arange(6.0).reshape(3, 2) * 10)
    with pytest.raises(DataError, match="coords of shape"):
        store.append(_set(2), np.zeros((2, 2)))
    done = store.append(_set(4, seed=1), 100 + np.arange(8.0).reshape(4, 2), coords=-np.ones((4, 2)))
    assert (done.n_new, done.evicted) == (4, 2)
    assert len(store) == 5 and store.features.shape == (5, 2) and store.coords.shape == (5, 2)
    assert store.images.metadata["i"].tolist() == [2, 0, 1, 2, 3]  # the oldest two went first
    np.testing.assert_array_equal(store.features[0], [4.0, 5.0])
    np.testing.assert_array_equal(store.coords[0], [40.0, 50.0])
    big = store.append(_set(7, seed=2), np.zeros((7, 2)), coords=np.zeros((7, 2)))
    assert (big.n_new, big.evicted) == (5, 7)  # a batch larger than the bound keeps its newest rows
    store.clear()
    assert len(store) == 0 and store.coords.shape == (0, 2)


def test_append_is_checked():
    store = SampleStore("g", max_samples=4)
    with pytest.raises(DataError, match="one feature row per image"):
        store.append(_set(3), np.zeros((2, 4)))
    store.append(_set(2), np.zeros((2, 4)))
    with pytest.raises(DataError, match="4-dimensional"):
        store.append(_set(2), np.zeros((2, 3)))
    with pytest.raises(DataError, match="cannot join"):
        store.append(_set(2, size=16), np.zeros((2, 4)))
    with pytest.raises(DataError, match="ImageSet"):
        store.append(np.zeros((2, 1, 8, 8)), np.zeros((2, 4)))
    with pytest.raises(DataError, match="positive integer"):
        SampleStore("g", max_samples=0)


def test_streaming_states_follow_appends_and_are_rebuilt_after_eviction():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(50, 3))
    store = SampleStore("g", max_samples=12)
    store.append(_set(6), rng.normal(size=(6, 3)))
    states = store.states(real, {"fid": StreamingFID})
    store.append(_set(4), rng.normal(size=(4, 3)))
    assert store.states(real, {"fid": StreamingFID}) is states and states["fid"].fake.n == 10  # updated in place
    store.append(_set(4), rng.normal(size=(4, 3)))  # evicts 2: a state cannot forget them
    rebuilt = store.states(real, {"fid": StreamingFID})
    assert rebuilt is not states and rebuilt["fid"].fake.n == 12
    np.testing.assert_allclose(rebuilt["fid"].fake.mean, store.features.mean(0))
    assert store.states(real, {"fid": StreamingFID}, key="other") is not rebuilt


def test_event_bus_subscriptions_can_be_removed():
    bus = EventBus(("samples", "active"))
    seen = []
    with bus.on("active", lambda name: seen.append(name)) as sub:
        bus.emit("active", name="a")
        assert sub.active
    bus.emit("active", name="b")
    assert seen == ["a"] and not sub.active and bus.count("active") == 0
    sub.remove()  # twice is harmless
    with pytest.raises(MedsynthError, match="unknown event 'sample'"):
        bus.on("sample", print)
    with pytest.raises(MedsynthError, match="callable"):
        bus.on("samples", None)


def test_a_subscriber_removed_during_an_event_is_not_called_again():
    bus = EventBus(("samples",))
    calls = []
    second = None

    def first(**_):
        calls.append("first")
        second.remove()

    bus.on("samples", first)
    second = bus.on("samples", lambda **_: calls.append("second"))
    bus.emit("samples")
    assert calls == ["first"]


@pytest.fixture
def small_session():
    return Session(reference=_set(40, seed=3), generators=[], encoder="pixels", max_samples=10)


def test_session_map_coordinates_stay_aligned_with_evicted_images(small_session):
    s = small_session
    s.add_samples(_set(6, seed=4), "g")
    emb = s.embedding(n_epochs=20)
    assert s.has_map and emb.synthetic["g"].shape == (6, 2)
    first = emb.synthetic["g"].copy()
    s.add_samples(_set(8, seed=5), "g")  # 14 > 10: the oldest 4 go, with their map points
    assert len(s.synthetic["g"]) == 10 and emb.synthetic["g"].shape == (10, 2)
    assert s.synthetic["g"].metadata["i"].tolist()[:2] == [4, 5]
    np.testing.assert_array_equal(emb.synthetic["g"][:2], first[4:])  # row 0 of the map is row 0 of the images
    s.add_samples(_set(3, seed=6), "late")  # a generator seen only after the map was fitted
    assert emb.synthetic["late"].shape == (3, 2)
    with pytest.raises(MedsynthError, match="belongs to a session"):
        emb.place("g", s.synthetic_features("g"))


def test_samples_event_reports_evictions(small_session):
    s = small_session
    events = []
    sub = s.on("samples", lambda **kw: events.append(kw))
    s.add_samples(_set(7, seed=1), "g")
    s.add_samples(_set(7, seed=2), "g")
    assert [(e["n_new"], e["evicted"]) for e in events] == [(7, 0), (7, 4)]
    sub.remove()
    s.clear_samples()
    assert len(events) == 2 and len(s.synthetic["g"]) == 0


def test_fairness_takes_one_column_name_as_a_string(small_session):
    s = small_session
    s.add_samples(_set(10, seed=7), "g")
    t = s.fairness(by="sex", generator="g", metric="fid", n_boot=5, min_group=3)
    assert set(t["group"]) == {"sex=F", "sex=M"}
    with pytest.raises(MedsynthError, match="fairness compares real and synthetic"):
        s.fairness(by="sex", generator="g", metric="copy_rate")


def test_a_closed_panel_stops_receiving_events(small_session):
    from medsynth_explore.jobs import JobRunner
    from medsynth_explore.widgets.fairness import FairnessPanel

    s = small_session
    before = s.events.count("samples")
    panel = FairnessPanel(s, runner=JobRunner(synchronous=True))
    assert s.events.count("samples") == before + 1
    calls = []
    panel.refresh_options = lambda: calls.append(1)
    s.add_samples(_set(4, seed=8), "g")
    assert calls == [1]
    panel.close()
    s.add_samples(_set(4, seed=9), "g")
    assert calls == [1] and s.events.count("samples") == before
