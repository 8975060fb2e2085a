"""Speaking to the service below httpx: raw HTTP/1.1 over a socket (half-sent uploads, lying or chunked
bodies, abandoned requests), multipart bodies, and the Prometheus text format read back."""

from __future__ import annotations

import re
import socket
import time
import urllib.parse

BOUNDARY = "video-swin-test-boundary"


def multipart_head(filename="clip.mp4", field="file"):
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: video/mp4\r\n\r\n").encode()


def multipart_tail():
    return f"\r\n--{BOUNDARY}--\r\n".encode()


def multipart(data, filename="clip.mp4", field="file"):
    return multipart_head(filename, field) + data + multipart_tail()


class RawRequest:
    """One HTTP/1.1 request written by hand: `send_headers`, then body bytes as the test decides."""

    def __init__(self, url, path, headers=None, timeout_s=60.0):
        parsed = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=timeout_s)
        self.host, self.path, self.headers = f"{parsed.hostname}:{parsed.port}", path, headers or {}

    def send_headers(self, content_length=None, chunked=False):
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {self.host}",
                 f"Content-Type: multipart/form-data; boundary={BOUNDARY}"]
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        elif content_length is not None:
            lines.append(f"Content-Length: {content_length}")
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.chunked = chunked

    def send(self, data):
        if self.chunked:
            data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        self.sock.sendall(data)

    def response(self):
        """(status, headers (lower-case names), body) of the answer."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed before an answer: {data!r}")
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", 0))
        while len(body) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, headers, body

    def close(self):
        self.sock.close()


def parse_metrics(text):
    """{(name, frozenset of label pairs): value} of a Prometheus text exposition, and {name: type}; checks
    that every sample belongs to a declared metric."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
        elif line and not line.startswith("#"):
            match = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)', line)
            assert match, f"not a sample line: {line!r}"
            name, labels = match.group(1), frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in types or base in types, f"sample of an undeclared metric: {line!r}"
            samples[(name, labels)] = float(match.group(4))
    return samples, types


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_for(condition, timeout_s=30.0, what="the condition"):
    """Polls `condition()` until it is true (a state the test waits on, not a guess at a duration)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
