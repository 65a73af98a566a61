"""``levitor studio`` (the Studio's command): JupyterLab on the quickstart notebook with the Studio preloaded."""

from __future__ import annotations

import argparse


def _studio(args: argparse.Namespace) -> int:
    from levitor_widgets.launch import launch_studio, serve

    return serve(launch_studio(args.target, port=args.port, open_browser=not args.no_browser))


def register(sub) -> None:
    p = sub.add_parser("studio", help="open the Studio notebook in JupyterLab",
                       description="Open the Studio notebook in JupyterLab (127.0.0.1, a free port).")
    p.add_argument("target", nargs="?", help="an image or a scene.json (default: the bundled scene)")
    p.add_argument("--port", type=int, help="default: a free one; a taken one is replaced by a free one")
    p.add_argument("--no-browser", action="store_true")
    p.set_defaults(run=_studio)
