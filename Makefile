# Two commands on a fresh machine: `make demo` runs the main job, `make test` runs the suite.
# Each creates .venv when needed and installs what it needs (PyTorch only as the test reference).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# The parity, command-line and video tests: CI runs them a second time in the oneDNN mode this machine's
# TensorFlow does not default to (`make test-other-onednn`), so that both modes pass on every CI machine.
# (tests/cli/test_demo.py, the demo end to end, runs in the first pass only: its parity step is these parity tests.)
ONEDNN_PASS_TESTS := tests/models/test_model_parity.py tests/models/test_layers_parity.py \
	tests/models/backend_parity_case.py tests/models/test_attention.py tests/models/test_inference.py tests/models/test_window_ops.py \
	tests/checkpoints/test_convert.py tests/checkpoints/test_inflate.py tests/checks/test_verify.py \
	tests/inference/test_classify.py tests/cli/test_errors.py tests/cli/test_bad_arguments.py tests/data/test_video.py tests/data/test_synthetic.py \
	tests/data/test_preprocess.py

.PHONY: demo test test-other-onednn clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[torch]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/video-swin demo

# Long cases (`@pytest.mark.slow`) are left out by pyproject's addopts; PYTEST_ARGS='-m slow' runs only
# them, PYTEST_ARGS='-m "slow or not slow"' everything.
test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-other-onednn: $(VENV)/.test-installed
	mode=$$($(BIN)/python scripts/onednn_mode.py --other) && echo "oneDNN mode for this pass: TF_ENABLE_ONEDNN_OPTS=$$mode" && \
	TF_ENABLE_ONEDNN_OPTS=$$mode $(BIN)/python -m pytest -q $(ONEDNN_PASS_TESTS) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
