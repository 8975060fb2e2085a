"""The service as a real process on 127.0.0.1, over HTTP: its answers are `video-swin classify`'s, and each
error status is produced on purpose and checked."""

import concurrent.futures
import importlib.util
import json
import uuid

import httpx
import pytest

from tests.deploy.serve.client import (
    RawRequest, metric, multipart, multipart_head, parse_metrics, wait_for,
)
from tests.deploy.serve.conftest import PRESET, SERVER_ENV, assert_same_answer
from video_swin.data.video import VideoError, probe
from video_swin.deploy.serve.process import ServerProcess

KEY = "test-key-" + uuid.uuid4().hex
AUTH = {"X-API-Key": KEY}
MIB = 1 << 20


def post(server, path, file, name=None, params=None, headers=None):
    with open(file, "rb") as f:
        return httpx.post(f"{server.url}{path}", files={"file": (name or file.name, f, "video/mp4")}, params=params,
                          headers=headers, timeout=300)


def metrics(server, headers=None):
    response = httpx.get(f"{server.url}/metrics", headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return parse_metrics(response.text)[0]


def files_under(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file())


def wait_idle(server, headers=None):
    """No request holds a place and no upload is left on disk."""
    wait_for(lambda: metric(metrics(server, headers), "video_swin_queue_depth") == 0, what="an empty queue")
    wait_for(lambda: not files_under(server.tmp_dir), what="the uploads to be removed")


# -- answers ------------------------------------------------------------------------------------------- #


def test_classify_answers_what_the_command_line_prints(server, clips, offline):
    for name, path in clips["good"].items():
        response = post(server, "/v1/classify", path)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["file"] == name and answer["timings"]["views"] == 1
        assert answer["timings"]["batch_views"] >= 1 and answer["timings"]["queue_s"] >= 0
        assert_same_answer(answer, offline[name])
    path = clips["good"]["growing.mp4"]
    assert_same_answer(post(server, "/v1/classify", path, params={"top_k": 8}).json(), offline["growing.mp4"], top_k=8)
    three = post(server, "/v1/classify", path, params={"top_k": 3, "views": "3x1"}).json()
    assert len(three["top_k"]) == 3 and three["timings"]["views"] == 3  # the query's views reach the protocol
    wait_idle(server)


def test_concurrent_requests_each_get_their_own_answer(server, clips, offline):
    names = list(clips["good"]) * 4

    def ask(name):
        return name, post(server, "/v1/classify", clips["good"][name])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, names))
    for name, response in answers:
        assert response.status_code == 200, response.text
        assert_same_answer(response.json(), offline[name])
    wait_idle(server)


def test_models_health_and_metrics(server, clips):
    info = httpx.get(f"{server.url}/v1/models").json()
    assert info["name"] == "synthetic_motion" and info["num_classes"] == 8 and len(info["class_names"]) == 8
    assert info["protocol"]["views"] == "1x1" and info["protocol"]["clip_len"] == 16
    assert info["service"]["max_batch_views"] == 8 and info["service"]["queue_size"] == 16
    assert info["service"]["max_upload_bytes"] == 100 * MIB and info["service"]["api_key_required"] is False
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}

    before = metrics(server)
    assert post(server, "/v1/classify", clips["good"]["moving_left.mp4"]).status_code == 200
    assert post(server, "/v1/classify", clips["bad"]["text.mp4"]).status_code == 422
    response = httpx.get(f"{server.url}/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    after, types = parse_metrics(response.text)
    grew = lambda name, **labels: metric(after, name, **labels) - metric(before, name, **labels)  # noqa: E731
    assert grew("video_swin_requests_total", endpoint="/v1/classify", status="200") == 1
    assert grew("video_swin_requests_total", endpoint="/v1/classify", status="422") == 1
    assert grew("video_swin_request_duration_seconds_count", endpoint="/v1/classify") == 2
    assert grew("video_swin_model_views_total") == 1 and grew("video_swin_model_seconds_total") > 0
    assert metric(after, "video_swin_queue_depth") == 0 and metric(after, "video_swin_queue_capacity") == 16
    assert metric(after, "process_resident_memory_bytes") > 0
    assert types["video_swin_request_duration_seconds"] == "histogram" and types["video_swin_queue_depth"] == "gauge"
    assert types["video_swin_requests_total"] == "counter" and types["video_swin_model_seconds_total"] == "counter"
    buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in after.items()
                      if k[0] == "video_swin_request_duration_seconds_bucket" and dict(k[1])["endpoint"] == "/v1/classify"))
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert buckets[-1] == (float("inf"), metric(after, "video_swin_request_duration_seconds_count", endpoint="/v1/classify"))
    wait_idle(server)


# -- refusals ------------------------------------------------------------------------------------------ #


def test_not_a_video_is_422_with_the_decoders_one_line_reason(server, clips):
    for name, path in clips["bad"].items():
        with pytest.raises(VideoError) as raised:
            probe(path)
        expected = " ".join(str(raised.value).replace(str(path), name).split())
        response = post(server, "/v1/classify", path)
        assert response.status_code == 422, (name, response.text)
        assert response.json() == {"error": expected}
        assert str(server.tmp_dir) not in response.text
    wait_idle(server)


def test_bad_requests_are_refused_in_one_line(server, clips):
    url, video = server.url, clips["good"]["growing.mp4"].read_bytes()
    headers = {"Content-Type": "multipart/form-data; boundary=video-swin-test-boundary"}
    response = httpx.post(f"{url}/v1/classify", content=multipart(video, field="video"), headers=headers)
    assert response.status_code == 422 and "field 'file'" in response.json()["error"]
    response = httpx.post(f"{url}/v1/classify", content=video, headers={"Content-Type": "video/mp4"})
    assert response.status_code == 415 and "multipart/form-data" in response.json()["error"]
    for params, words in [({"top_k": 0}, "top_k"), ({"views": "2x2"}, "crops must be 1"), ({"views": "many"}, "views")]:
        response = post(server, "/v1/classify", clips["good"]["growing.mp4"], params=params)
        assert response.status_code == 422 and words in response.json()["error"], response.text
    assert httpx.get(f"{url}/nowhere").status_code == 404 and httpx.get(f"{url}/nowhere").json() == {"error": "Not Found"}
    assert httpx.get(f"{url}/v1/classify").status_code == 405
    assert httpx.get(f"{url}/docs").status_code == 404  # no Swagger UI: it would load from a CDN
    wait_idle(server)


def test_the_page_and_its_files_are_served_from_here_only(server):
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for response in (page, httpx.get(f"{server.url}/static/app.js"), httpx.get(f"{server.url}/static/style.css")):
        assert response.status_code == 200
        assert "default-src 'self'" in response.headers["content-security-policy"]
        text = response.text.replace('"http://www.w3.org/2000/svg"', "")  # the SVG namespace names, fetches nothing
        assert "http://" not in text and "https://" not in text and "//" not in text.replace("// ", "")


def test_an_endpoint_whose_module_is_missing_answers_501():
    """The service degrades to 501 where an optional part of the package is absent (a trimmed install)."""
    from video_swin.deploy.serve.app import Problem, optional_function

    with pytest.raises(Problem) as missing:
        optional_function("video_swin.inference.no_such_module", "run", "POST /v1/x")
    assert missing.value.status == 501 and "video_swin.inference.no_such_module is missing" in str(missing.value)


def test_a_file_name_never_names_a_path_on_the_server(server, clips, offline, tmp_path):
    stem = uuid.uuid4().hex
    for name in [f"../../../../{stem}.mp4", f"..\\..\\{stem}.mp4", f"{tmp_path}/{stem}.mp4"]:
        response = post(server, "/v1/classify", clips["good"]["shrinking.mp4"], name=name)
        assert response.status_code == 200 and response.json()["file"] == f"{stem}.mp4"
        assert_same_answer(response.json(), offline["shrinking.mp4"])
    assert not (tmp_path / f"{stem}.mp4").exists()
    assert not any(p.name.startswith(stem) for p in server.tmp_dir.rglob("*"))
    wait_idle(server)


# -- the limits: a second server with an API key, one place in the queue, 1 MiB uploads, a 2 s stall --- #


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    root = tmp_path_factory.mktemp("strict")
    with ServerProcess(PRESET, "--queue-size", "1", "--max-upload-mb", "1", "--upload-timeout", "2", "--tmp-dir",
                       root / "tmp", env={**SERVER_ENV, "VIDEO_SWIN_API_KEY": KEY}, log_dir=root / "logs") as process:
        process.tmp_dir = root / "tmp"
        yield process


def test_the_api_key_is_required_except_by_the_probe_and_the_page(strict, clips):
    path = clips["good"]["growing.mp4"]
    missing = post(strict, "/v1/classify", path)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"].startswith("missing API key")
    wrong = post(strict, "/v1/classify", path, headers={"X-API-Key": KEY + "x"})
    assert wrong.status_code == 401 and wrong.json()["error"].startswith("wrong API key")
    assert post(strict, "/v1/classify", path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert post(strict, "/v1/classify", path, headers=AUTH).status_code == 200
    for closed in ["/v1/models", "/metrics", "/openapi.json"]:
        assert httpx.get(f"{strict.url}{closed}").status_code == 401, closed
        assert httpx.get(f"{strict.url}{closed}", headers=AUTH).status_code == 200, closed
    assert post(strict, "/v1/timeline", path).status_code == 401
    for open_path in ["/healthz", "/", "/static/app.js"]:
        assert httpx.get(f"{strict.url}{open_path}").status_code == 200, open_path
    wait_idle(strict, AUTH)


def test_a_declared_body_over_the_limit_is_413_before_it_is_sent(strict):
    request = RawRequest(strict.url, "/v1/classify", AUTH)
    request.send_headers(content_length=5 * MIB)  # and not one byte of it
    status, headers, body = request.response()
    request.close()
    assert status == 413 and b"over the limit of 1 MiB" in body
    wait_idle(strict, AUTH)


def test_a_chunked_body_is_refused_once_it_passes_the_limit(strict):
    request = RawRequest(strict.url, "/v1/classify", AUTH)
    request.send_headers(chunked=True)
    head = multipart_head()
    request.send(head)
    sent, chunk = len(head), b"\0" * (64 << 10)
    while sent <= MIB:  # the byte that passes the limit is in the last chunk: the service reads all that is sent
        request.send(chunk)
        sent += len(chunk)
    status, headers, body = request.response()
    request.close()
    assert status == 413 and b"over the limit of 1 MiB" in body
    wait_idle(strict, AUTH)


def test_a_full_queue_is_503_with_retry_after(strict, clips, offline):
    body = multipart(clips["good"]["moving_right.mp4"].read_bytes(), filename="moving_right.mp4")
    holder = RawRequest(strict.url, "/v1/classify", AUTH)
    holder.send_headers(content_length=len(body))
    holder.send(body[: len(body) // 2])  # holds the only place while its upload is under way
    wait_for(lambda: metric(metrics(strict, AUTH), "video_swin_queue_depth") == 1, what="the first request's place")
    refused = post(strict, "/v1/classify", clips["good"]["growing.mp4"], headers=AUTH)
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
    assert "queue is full" in refused.json()["error"]
    holder.send(body[len(body) // 2 :])
    status, _, answer = holder.response()
    holder.close()
    assert status == 200
    assert_same_answer(json.loads(answer), offline["moving_right.mp4"])
    assert post(strict, "/v1/classify", clips["good"]["growing.mp4"], headers=AUTH).status_code == 200
    wait_idle(strict, AUTH)


def test_a_client_that_goes_away_mid_upload_leaves_no_file(strict, clips):
    before = metrics(strict, AUTH)
    body = multipart(clips["good"]["page.mp4"].read_bytes())
    request = RawRequest(strict.url, "/v1/classify", AUTH)
    request.send_headers(content_length=len(body))
    request.send(body[: len(body) // 2])
    uploads = wait_for(lambda: [p for p in files_under(strict.tmp_dir) if p.stat().st_size > 0], what="the upload on disk")
    assert len(uploads) == 1 and uploads[0].name == "upload.mp4"
    request.close()
    wait_idle(strict, AUTH)
    after = metrics(strict, AUTH)
    assert metric(after, "video_swin_requests_total", endpoint="/v1/classify", status="499") == \
        metric(before, "video_swin_requests_total", endpoint="/v1/classify", status="499") + 1


def test_a_stalled_upload_is_dropped_with_408(strict, clips):
    body = multipart(clips["good"]["growing.mp4"].read_bytes())
    request = RawRequest(strict.url, "/v1/classify", AUTH)
    request.send_headers(content_length=len(body))
    request.send(body[:1000])
    status, _, answer = request.response()  # the service answers by itself after 2 s without a byte
    request.close()
    assert status == 408 and b"the upload stalled" in answer
    wait_idle(strict, AUTH)


def test_explain_answers_the_explanation_video_that_the_api_draws(server, clips):
    """`POST /v1/explain` returns the GIF (or MP4) that `explain` + `explain_render.render` make of the same
    file in this process: same frames, same pixels (the default method, occlusion, is deterministic)."""
    import av
    import numpy as np

    from video_swin.inference import explain_render
    from video_swin.inference.explain import explain

    path = clips["good"]["growing.mp4"]
    response = post(server, "/v1/explain", path, params={"format": "gif"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/gif"
    expected = explain_render.render(explain(str(path), PRESET), str(path), "gif")

    def frames(data):
        import io

        with av.open(io.BytesIO(data)) as container:
            return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])

    served, offline_frames = frames(response.content), frames(expected)
    assert served.shape == offline_frames.shape and served.shape[0] == probe(path).num_frames
    np.testing.assert_array_equal(served, offline_frames)
    named = post(server, "/v1/explain", path, params={"format": "mp4", "label": "no-such-class"})
    assert named.status_code == 422 and "no-such-class" in named.json()["error"]
    wait_idle(server)


def test_timeline_answers_the_segments_and_windows_of_the_api(server, clips):
    """`POST /v1/timeline` returns the segments (ActivityNet's results format, keyed by the upload's name) and
    the windows that `timeline()` gives for the same file in this process, scores within 1e-6."""
    import numpy as np

    from video_swin.inference.timeline import timeline

    path = clips["good"]["page.mp4"]
    response = post(server, "/v1/timeline", path, name="clip.mp4", params={"smooth": 1, "min_score": 0})
    assert response.status_code == 200, response.text
    served = response.json()
    expected = timeline(str(path), PRESET, video_id="clip.mp4", smooth=1, min_score=0)
    assert list(served["results"]) == ["clip.mp4"] and str(path.parent) not in response.text
    got, want = served["results"]["clip.mp4"], expected["segments"]
    assert [s["label"] for s in got] == [s["label"] for s in want] and want
    np.testing.assert_allclose([s["score"] for s in got], [s["score"] for s in want], atol=1e-6)
    np.testing.assert_allclose([s["segment"] for s in got], [s["segment"] for s in want], atol=1e-6)
    assert [w["window"] for w in served["windows"]] == [w["window"] for w in expected["windows"]]
    bad = post(server, "/v1/timeline", path, params={"smooth": "x"})
    assert bad.status_code == 422 and "smooth" in bad.json()["error"]
    wait_idle(server)
