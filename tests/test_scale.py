"""Shard-wise work on a real Dask LocalCluster: same results as the local path, and no lost shards."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

from medsynth_explore.errors import CancelledError, ConditionError, DataError  # noqa: E402
from medsynth_explore.export import export, read_manifest, verify  # noqa: E402
from medsynth_explore.generators import image_seeds  # noqa: E402
from medsynth_explore.metrics import StreamingFID  # noqa: E402
from medsynth_explore.scale import (  # noqa: E402
    Sampling,
    distributed_features,
    distributed_metric_state,
    merge_states,
    plan_shards,
    run_shards,
    shard_seed,
)

import doubles  # noqa: E402
from doubles import AGE_SEX_SCHEMA, Noise  # noqa: E402

# Workers must unpickle the test generator, which lives in modules they cannot import.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(doubles)

DIST = {"n": 2, "age": {"hist": [1, 1], "edges": [18.0, 54.0, 90.0]}, "sex": {"F": 0.5, "M": 0.5}}


def NoiseGenerator(delay: float = 0.0, marks: str | None = None) -> Noise:
    """Seeded noise; optionally slow, and noting in ``marks`` which process started which shard."""
    return Noise(schema=AGE_SEX_SCHEMA, sha256="cd" * 32, delay=delay, marks=marks, distribution=DIST)


def _fail_on_three(x):
    if x == 3:
        raise ConditionError("three is not allowed here")
    return x * 10


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=None,
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        silence_logs=40,
    ) as lc:
        with Client(lc) as client:
            yield lc, client


@pytest.fixture
def client(cluster):
    return cluster[1]


def _contents(folder: Path) -> dict:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def test_distributed_export_equals_local_export(client, tmp_path):
    gen = NoiseGenerator()
    local = export(gen, 11, tmp_path / "local", seed=7, shard_size=3, npz=True)
    remote = export(gen, 11, tmp_path / "remote", seed=7, shard_size=3, npz=True, client=client)
    assert _contents(local) == _contents(remote)
    ml, mr = read_manifest(local), read_manifest(remote)
    assert ml["files"] == mr["files"] and ml["shards"] == mr["shards"]
    assert verify(remote).ok


def test_address_string_is_accepted(cluster, tmp_path):
    lc, _ = cluster
    out = export(NoiseGenerator(), 4, tmp_path / "syn", seed=1, shard_size=2, client=lc.scheduler_address)
    assert verify(out).ok


def test_features_agree_for_arrays_exports_and_sampling(client, tmp_path):
    gen = NoiseGenerator()
    x = np.random.default_rng(0).random((9, 1, 16, 16)).astype(np.float32)
    kw = {"encoder": "random-cnn", "encoder_kwargs": {"size": 16, "dim": 8}, "shard_size": 4}
    f_local = distributed_features(x, **kw)
    f_dask = distributed_features(x, client=client, **kw)
    assert f_local.shape == (9, 8) and f_local.dtype == np.float32
    np.testing.assert_array_equal(f_local, f_dask)

    out = export(gen, 6, tmp_path / "syn", seed=2, shard_size=4)
    np.testing.assert_array_equal(distributed_features(out, **kw), distributed_features(out, client=client, **kw))

    spec = Sampling(gen, n=6, seed=2)
    got = distributed_features(spec, client=client, **kw)
    np.testing.assert_array_equal(got, distributed_features(spec, **kw))
    # the samples are the export's images before 16-bit quantisation
    again = np.concatenate([gen.sample(c, seed=shard_seed(2, k)).images for k, (_, c) in enumerate(plan_shards(6, 4))])
    np.testing.assert_array_equal(got, distributed_features(again, **kw))


def test_metric_states_merge_to_the_same_state(client):
    rng = np.random.default_rng(1)
    real = rng.random((10, 1, 16, 16)).astype(np.float32)
    spec = Sampling(NoiseGenerator(), n=7, seed=3)
    kw = {"encoder": "pixels", "encoder_kwargs": {"size": 4}, "shard_size": 3}
    s_local = distributed_metric_state({"fid": StreamingFID}, real=real, fake=spec, **kw)["fid"]
    s_dask, feats = distributed_metric_state({"fid": "fid"}, real=real, fake=spec, client=client, return_features=True, **kw)
    s_dask = s_dask["fid"]
    for side in ("real", "fake"):
        a, b = getattr(s_local, side), getattr(s_dask, side)
        assert a.n == b.n
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.scatter, b.scatter)
    assert s_local.real.n == 10 and s_local.fake.n == 7
    assert s_local.compute() == s_dask.compute()
    # the merged state is the state of all features at once, up to rounding
    whole = StreamingFID()
    whole.update(feats["real"], real=True)
    whole.update(feats["fake"], real=False)
    np.testing.assert_allclose(whole.compute(), s_dask.compute(), rtol=1e-6)


def test_task_errors_are_raised_here_with_their_type(client):
    assert run_shards(_fail_on_three, [(1,), (2,)], client=client) == [10, 20]
    with pytest.raises(ConditionError, match="three is not allowed"):
        run_shards(_fail_on_three, [(1,), (3,), (4,)], client=client)
    with pytest.raises(ConditionError, match="outside the range"):
        distributed_features(Sampling(NoiseGenerator(), n=2, conditions={"age": 3}), client=client)


def test_cancel_on_dask_then_resume(client, tmp_path):
    gen = NoiseGenerator(delay=0.05)
    out = tmp_path / "syn"
    with pytest.raises(CancelledError):
        export(gen, 12, out, seed=5, shard_size=2, client=client, callback=lambda d, t: d < 4)
    assert not (out / "manifest.json").exists()
    export(gen, 12, out, seed=5, shard_size=2, client=client)
    assert verify(out).ok
    assert _contents(out) == _contents(export(gen, 12, tmp_path / "clean", seed=5, shard_size=2))


@pytest.mark.slow
def test_worker_killed_mid_export_loses_no_finished_shard(cluster, tmp_path):
    _, client = cluster
    marks = tmp_path / "marks"
    marks.mkdir()
    gen = NoiseGenerator(delay=1.0, marks=str(marks))
    out = tmp_path / "syn"
    n, size = 16, 2
    # shard of each image seed that starts a shard (what the generator notes in ``marks``)
    first = {int(image_seeds(shard_seed(9, k), size)[0]): k for k in range(n // size)}
    snapshot, killed = {}, []

    def kill_a_busy_worker(done, total):
        if killed:
            return True
        # files of the shards recorded so far, to check later that nothing rewrites them
        for rec in (out / ".progress").glob("shard-*.json"):
            k = int(rec.stem.split("-")[1])
            for name in (f"images/{i:06d}.png" for i in range(k * size, (k + 1) * size)):
                p = out / name
                snapshot[name] = (p.stat().st_mtime_ns, p.read_bytes())
        # a worker that started a shard which is not yet recorded: it is mid-task
        recorded = {int(p.stem.split("-")[1]) for p in (out / ".progress").glob("shard-*.json")}
        pids = set(client.run(os.getpid).values())
        for m in sorted(marks.iterdir(), key=lambda p: int(p.name.split("-")[2])):
            s, pid, started = m.name.split("-")
            shard = first.get(int(s))
            # only a shard started less than half its run time ago is surely still running
            fresh = time.monotonic_ns() - int(started) < 0.5e9 * gen.delay
            if shard is not None and shard not in recorded and int(pid) in pids and fresh:
                killed.append((int(pid), shard))
                os.kill(int(pid), signal.SIGKILL)
                break
        return True

    export(gen, n, out, seed=9, shard_size=size, client=client, callback=kill_a_busy_worker)
    assert killed, "no worker was busy when the first shard finished"
    pid, shard = killed[0]
    assert snapshot, "no shard was finished before the kill"
    # the interrupted shard was started twice: once on the killed worker, once again elsewhere
    first_seed = int(image_seeds(shard_seed(9, shard), size)[0])
    starts = [m for m in marks.iterdir() if int(m.name.split("-")[0]) == first_seed]
    assert len(starts) >= 2 and {int(m.name.split("-")[1]) for m in starts} - {pid}
    for name, (mtime, data) in snapshot.items():
        p = out / name
        assert p.stat().st_mtime_ns == mtime and p.read_bytes() == data
    assert not list(out.rglob("*.tmp")) and not (out / ".progress").exists()
    res = verify(out)
    assert res.ok, str(res)
    assert _contents(out) == _contents(export(NoiseGenerator(), n, tmp_path / "clean", seed=9, shard_size=size))
    # the nanny brought a fresh worker back
    client.wait_for_workers(2, timeout=60)
    assert pid not in set(client.run(os.getpid).values())


def test_merge_states_does_not_modify_inputs():
    rng = np.random.default_rng(0)
    parts = []
    for _ in range(3):
        s = StreamingFID()
        s.update(rng.normal(size=(5, 3)), real=True)
        parts.append(s)
    n_before = [p.real.n for p in parts]
    total = merge_states(parts)
    assert total.real.n == 15 and [p.real.n for p in parts] == n_before
    with pytest.raises(DataError, match="no states"):
        merge_states([])


def test_no_client_object_rejected():
    from medsynth_explore.errors import MedsynthError

    with pytest.raises(MedsynthError, match="client must be"):
        run_shards(pow, [(2, 2)], client=42)


def test_builtin_generator_by_name_on_workers(client, tmp_path):
    local = export("phantomcxr-physics", 4, tmp_path / "local", seed=2, shard_size=2)
    remote = export("phantomcxr-physics", 4, tmp_path / "remote", seed=2, shard_size=2, client=client)
    assert _contents(local) == _contents(remote)


def test_progress_counts_images_on_dask(client):
    x = np.zeros((7, 1, 8, 8), np.float32)
    seen = []
    distributed_features(
        x, "pixels", client=client, shard_size=3, encoder_kwargs={"size": 4}, callback=lambda d, t: seen.append((d, t))
    )
    assert sorted(seen) == [(a, 7) for a in sorted(d for d, _ in seen)] and seen[-1] == (7, 7) and len(seen) == 3
