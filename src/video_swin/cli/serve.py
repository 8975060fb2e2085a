"""`video-swin serve`: a preset behind HTTP (`deploy.serve.app.serve`)."""

from __future__ import annotations

import os
import sys

from video_swin.cli.app import add_precision_argument


def _cmd_serve(args):
    from video_swin.deploy.serve import require_packages

    require_packages()  # before the model loads: a missing package is one line at once
    from video_swin.deploy.serve.app import API_KEY_ENV, serve

    def ready(url):
        keyed = bool(args.api_key or (args.api_key is None and os.environ.get(API_KEY_ENV)))
        print(f"video-swin serve: {url} (preset {args.preset}; {'API key required' if keyed else 'no API key'}; "
              "Ctrl-C stops)", flush=True)
        if not keyed and args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"video-swin serve: warning: {url} is open beyond this machine without an API key "
                  f"(--api-key or ${API_KEY_ENV})", file=sys.stderr, flush=True)

    serve(args.preset, args.host, args.port, access_log=not args.no_access_log, on_ready=ready, views=args.views,
          max_batch=args.max_batch, queue_size=args.queue_size, max_upload_mb=args.max_upload_mb, api_key=args.api_key,
          tmp_dir=args.tmp_dir, upload_timeout_s=args.upload_timeout, decode_workers=args.decode_workers,
          warmup=not args.no_warmup, precision=args.precision)


def add_subcommands(sub):
    p = sub.add_parser("serve", help="serve a preset over HTTP, with a web page")
    p.add_argument("--preset", required=True, help="preset folder, or a registered name (`video-swin presets`)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free port, printed)")
    p.add_argument("--views", help="the protocol's views for every request unless it asks otherwise, e.g. 1x1")
    p.add_argument("--max-batch", type=int, default=8, help="views per model call, shared by requests (default 8)")
    p.add_argument("--queue-size", type=int, default=32,
                   help="requests held at once (uploading, waiting, scored); more get 503 (default 32)")
    p.add_argument("--max-upload-mb", type=float, default=100.0, help="largest upload in MiB; more gets 413 (default 100)")
    p.add_argument("--api-key", help="require this key (default: $VIDEO_SWIN_API_KEY; the variable keeps it out of `ps`)")
    p.add_argument("--tmp-dir", help="private folder for uploads (default: video-swin-serve-<uid> in the system's temp)")
    p.add_argument("--upload-timeout", type=float, default=30.0,
                   help="drop an upload that sends nothing for this many seconds (default 30)")
    p.add_argument("--decode-workers", type=int, default=2, help="uploads decoded at once (default 2)")
    add_precision_argument(p)
    p.add_argument("--no-warmup", action="store_true", help="do not run the model once before listening")
    p.add_argument("--no-access-log", action="store_true", help="no line per request on stdout")
    p.set_defaults(func=_cmd_serve)
