"""`video-swin serve` without its packages: one line naming the extra, before any model is loaded."""

import importlib.util

from video_swin import cli


def test_missing_package_names_the_pip_extra(monkeypatch, capsys):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("uvicorn", "python_multipart") else real_find_spec(name, *a))
    assert cli.main(["serve", "--preset", "synthetic-motion"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("video-swin: error: video-swin serve needs uvicorn, python-multipart, which are not installed: "
                   "pip install 'video_swin[serve]'"), err


def test_a_port_in_use_is_one_line_before_the_model_loads(monkeypatch, capsys):
    import socket

    from video_swin.deploy.serve import app

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded for a port in use")

    monkeypatch.setattr(app, "create_app", must_not_load)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        assert cli.main(["serve", "--preset", "synthetic-motion", "--port", str(port)]) == 1
    finally:
        taken.close()
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"video-swin: error: cannot listen on 127.0.0.1:{port}: ") and "\n" not in err, err
