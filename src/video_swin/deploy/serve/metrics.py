"""The service's metrics in the Prometheus text exposition format (version 0.0.4), without a client library.

Counters, one gauge callback per gauge and histograms with fixed buckets, thread-safe: request handlers
(event loop), the decode threads and the model thread all record here.
"""

from __future__ import annotations

import math
import os
import threading

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Request latency buckets in seconds: a tiny model answers in milliseconds, Swin-B on 4x3 views in minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def _escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names, values) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values)) + "}"


def _number(x) -> str:
    if x == math.inf:
        return "+Inf"
    if isinstance(x, int) or float(x).is_integer():
        return str(int(x))
    return repr(float(x))


class _Metric:
    kind = ""

    def __init__(self, name, help_text, labels=()):
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self._lock = threading.Lock()

    def header(self):
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name, help_text, labels=()):
        super().__init__(name, help_text, labels)
        self._values = {} if labels else {(): 0.0}

    def inc(self, amount=1.0, *labels):
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels):
        with self._lock:
            return self._values.get(labels, 0.0)

    def lines(self):
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Gauge(_Metric):
    """A value read when the metrics are rendered (`read` is called then)."""

    kind = "gauge"

    def __init__(self, name, help_text, read):
        super().__init__(name, help_text)
        self.read = read

    def lines(self):
        return self.header() + [f"{self.name} {_number(self.read())}"]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name, help_text, buckets, labels=()):
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets)) + (math.inf,)
        self._series = {}  # labels -> [bucket counts (not cumulative)..., sum, count]

    def observe(self, value, *labels):
        with self._lock:
            series = self._series.setdefault(labels, [0] * len(self.buckets) + [0.0, 0])
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    series[i] += 1
                    break
            series[-2] += value
            series[-1] += 1

    def lines(self):
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        out = self.header()
        for labels, series in items:
            cumulative = 0
            for bound, count in zip(self.buckets, series):
                cumulative += count
                le = _labels(self.label_names + ("le",), labels + (_number(bound),))
                out.append(f"{self.name}_bucket{le} {cumulative}")
            out.append(f"{self.name}_sum{_labels(self.label_names, labels)} {_number(series[-2])}")
            out.append(f"{self.name}_count{_labels(self.label_names, labels)} {series[-1]}")
        return out


def resident_memory_bytes() -> int:
    """This process's resident set size (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class ServiceMetrics:
    """Everything `/metrics` shows. `queue_depth` and `model_waiting` are read from the worker."""

    def __init__(self, queue_depth, queue_capacity, model_waiting):
        self.requests = Counter(
            "video_swin_requests_total", "HTTP requests answered, by endpoint and status code (499: the client "
            "went away first).", ("endpoint", "status"))
        self.latency = Histogram(
            "video_swin_request_duration_seconds", "Time from a request's arrival to the end of its answer.",
            LATENCY_BUCKETS, ("endpoint",))
        self.model_seconds = Counter("video_swin_model_seconds_total", "Time the model worker spent in the model.")
        self.model_batches = Counter("video_swin_model_batches_total", "Model calls made by the worker.")
        self.model_views = Counter("video_swin_model_views_total", "Views scored by the model.")
        self.batch_views = Histogram(
            "video_swin_model_batch_views", "Views per model call (several requests' views share a call).",
            BATCH_BUCKETS)
        self.decode_seconds = Counter(
            "video_swin_decode_seconds_total", "Time spent decoding and preprocessing uploads into views.")
        self._gauges = [
            Gauge("video_swin_queue_depth", "Requests holding a place in the model's queue (uploading, decoding, "
                  "waiting or being scored).", queue_depth),
            Gauge("video_swin_queue_capacity", "Places in the model's queue (--queue-size); more requests get 503.",
                  queue_capacity),
            Gauge("video_swin_model_waiting", "Jobs handed to the model worker and not yet started.", model_waiting),
            Gauge("process_resident_memory_bytes", "Resident memory size in bytes.", resident_memory_bytes),
        ]

    def render(self) -> str:
        lines = []
        for metric in (self.requests, self.latency, self.model_seconds, self.model_batches, self.model_views,
                       self.batch_views, self.decode_seconds, *self._gauges):
            lines += metric.lines()
        return "\n".join(lines) + "\n"
