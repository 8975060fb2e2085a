"""The model worker in-process: views of several videos scored in one model call get the probabilities each
gets alone, a video larger than a batch is split, a failing job does not stop the worker, and the queue's
places run out."""

import numpy as np
import pytest

from video_swin.deploy.serve.metrics import ServiceMetrics
from video_swin.deploy.serve.worker import ModelWorker, QueueFull
from video_swin.inference.classify import VideoClassifier


@pytest.fixture(scope="module")
def classifier():
    return VideoClassifier("synthetic-motion", batch_size=8)


@pytest.fixture(scope="module")
def videos(classifier, clips):
    """Views of the five clips (one view each) and of one clip as 3 clips x 1 crop."""
    views = [classifier.views(str(clips["good"][name]))[0] for name in sorted(clips["good"]) if name != "page.mp4"]
    views.append(classifier.views(str(clips["good"]["growing.mp4"]), classifier.protocol.with_views("3x1"))[0])
    assert [len(v) for v in views] == [1, 1, 1, 1, 1, 3]
    return views


def _metrics():
    return ServiceMetrics(lambda: 0, lambda: 0, lambda: 0)


def test_videos_scored_together_get_what_they_get_alone(classifier, videos):
    alone = [VideoClassifier.probabilities(np.concatenate([classifier.view_logits(v[i : i + 1]) for i in range(len(v))]))
             for v in videos]  # one view per model call, as `video-swin classify` (--batch 1)
    metrics = _metrics()
    worker = ModelWorker(classifier, max_batch=4, queue_size=8, metrics=metrics)
    futures = [worker.score(v) for v in videos]  # all waiting before the worker starts: they are batched
    worker.start()
    try:
        results = [f.result(120) for f in futures]
    finally:
        worker.close()
    for (probabilities, _), expected in zip(results, alone):
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)
        assert probabilities.shape == (8,) and abs(probabilities.sum() - 1) < 1e-9
    # 4 one-view videos fill the first call; the fifth and the three-view one share the second.
    assert [info["batch_views"] for _, info in results] == [4, 4, 4, 4, 4, 4]
    assert metrics.model_batches.value() == 2 and metrics.model_views.value() == 8


def test_a_video_larger_than_a_batch_is_scored_in_several_calls(classifier, videos):
    metrics = _metrics()
    worker = ModelWorker(classifier, max_batch=2, queue_size=8, metrics=metrics).start()
    try:
        probabilities, info = worker.score(videos[-1]).result(120)
    finally:
        worker.close()
    np.testing.assert_allclose(probabilities, classifier.score_views(videos[-1]), rtol=0, atol=1e-6)
    assert info["batch_views"] == 3 and metrics.model_batches.value() == 2


def test_a_failing_job_fails_alone(classifier, videos):
    worker = ModelWorker(classifier, max_batch=4, queue_size=8).start()
    try:
        with pytest.raises(ZeroDivisionError):
            worker.call(lambda: 1 / 0).result(60)
        with pytest.raises(Exception):
            worker.score(np.zeros((1, 3, 3), "float32")).result(60)  # not views: the model refuses it
        assert worker.call(lambda: "still here").result(60) == "still here"
        assert worker.score(videos[0]).result(60)[0].shape == (8,)
    finally:
        worker.close()


def test_places_run_out_and_come_back(classifier):
    worker = ModelWorker(classifier, max_batch=4, queue_size=2)
    places = [worker.reserve(), worker.reserve()]
    assert worker.depth == 2
    with pytest.raises(QueueFull) as full:
        worker.reserve()
    assert full.value.retry_after >= 1 and "queue is full (2 requests)" in str(full.value)
    worker.release(places.pop())
    worker.reserve()
    assert worker.depth == 2
