#!/usr/bin/env python3
"""Execute a notebook with nbclient through a remote Jupyter-compatible server's kernels.

    python tests/clients/nbclient_run.py [--url URL] [--token TOKEN] NOTEBOOK [--output OUT]

URL and TOKEN default to $COMMONLAB_TEST_URL and $COMMONLAB_TEST_TOKEN. The executed notebook is
written to OUT (default: NOTEBOOK with ".executed.ipynb"). Exit status: 0 when every cell ran and the
expectations in each cell's "commonlab_expect" metadata hold (see fixtures/make_multicell.py),
1 when an expectation failed or a cell raised, 2 on usage errors.

How it works: nbclient runs unchanged. Its kernel manager is jupyter_server's GatewayKernelManager,
which starts, interrupts and stops kernels over the server's REST API (/api/kernels) with the
GatewayClient singleton's URL and token, and whose GatewayKernelClient speaks the kernel websocket
(/api/kernels/<id>/channels, legacy JSON framing, no subprotocol).

One gap is filled here: GatewayKernelClient.start_channels() opens the websocket without the
configured auth header. A server with token auth answers the handshake with 403, start_channels raises,
and nbclient's clean-up then fails with `AssertionError` on `channel_socket is None`, hiding the 403.
AuthenticatedGatewayKernelClient below opens the same websocket with the same headers that
GatewayClient uses for its REST calls, then continues exactly as the parent class does.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from threading import Thread

import nbformat
import websocket
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_core.utils import ensure_async
from jupyter_server.gateway.gateway_client import GatewayClient
from jupyter_server.gateway.managers import GatewayKernelClient, GatewayKernelManager
from jupyter_server.utils import url_escape, url_path_join
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from traitlets import Type


class AuthenticatedGatewayKernelClient(GatewayKernelClient):
    """GatewayKernelClient whose websocket handshake carries GatewayClient's auth headers."""

    async def start_channels(self, shell=True, iopub=True, stdin=True, hb=True, control=True):
        gateway = GatewayClient.instance()
        ws_url = url_path_join(gateway.ws_url or "", gateway.kernels_endpoint,
                               url_escape(self.kernel_id), "channels")
        headers = gateway.load_connection_args().get("headers", {})
        self.channel_socket = websocket.create_connection(
            ws_url,
            timeout=gateway.KERNEL_LAUNCH_TIMEOUT,
            enable_multithread=True,
            header=[f"{k}: {v}" for k, v in headers.items()],
            sslopt={"ca_certs": gateway.ca_certs, "certfile": gateway.client_cert,
                    "keyfile": gateway.client_key},
        )
        await ensure_async(AsyncKernelClient.start_channels(
            self, shell=shell, iopub=iopub, stdin=stdin, hb=hb, control=control))
        self.response_router = Thread(target=self._route_responses, daemon=True)
        self.response_router.start()


class RemoteKernelManager(GatewayKernelManager):
    """GatewayKernelManager that hands out AuthenticatedGatewayKernelClient."""

    client_class = "nbclient_run.AuthenticatedGatewayKernelClient"
    client_factory = Type(klass=AuthenticatedGatewayKernelClient)


def configure_gateway(url: str, token: str) -> None:
    """Point jupyter_server's GatewayClient singleton at the server under test."""
    gateway = GatewayClient.instance()
    gateway.url = url.rstrip("/")
    gateway.ws_url = "ws" + gateway.url[len("http"):]
    gateway.auth_token = token
    gateway.auth_scheme = "token"
    gateway.request_timeout = max(gateway.request_timeout, 60.0)


def execute_notebook(path: Path, kernel_name: str | None, timeout: int) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel_name or nb.metadata.get("kernelspec", {}).get("name", "python3"),
        kernel_manager_class=RemoteKernelManager,
        allow_errors=False,
        record_timing=True,
    )
    client.execute()
    return nb


def _outputs(cell, output_type):
    return [o for o in cell.get("outputs", []) if o.get("output_type") == output_type]


def check_expectations(nb: nbformat.NotebookNode) -> list[str]:
    """Compare each code cell's outputs with its "commonlab_expect" metadata; return the failures."""
    failures: list[str] = []
    counts = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = f"cell {index} ({cell.get('id', '?')})"
        counts.append(cell.get("execution_count"))
        errors = _outputs(cell, "error")
        if errors:
            failures.append(f"{where}: raised {errors[0].get('ename')}: {errors[0].get('evalue')}")
        expect = cell.metadata.get("commonlab_expect")
        if not expect:
            continue
        streams = {name: "".join(o.get("text", "") for o in _outputs(cell, "stream") if o.get("name") == name)
                   for name in ("stdout", "stderr")}
        for name in ("stdout", "stderr"):
            if name in expect and streams[name] != expect[name]:
                failures.append(f"{where}: {name} {streams[name]!r}, expected {expect[name]!r}")
        results = _outputs(cell, "execute_result")
        if "result" in expect:
            got = results[0].get("data", {}).get("text/plain") if results else None
            if got != expect["result"]:
                failures.append(f"{where}: execute_result {got!r}, expected {expect['result']!r}")
        if "result_mimes" in expect:
            have = set(results[0].get("data", {})) if results else set()
            missing = set(expect["result_mimes"]) - have
            if missing:
                failures.append(f"{where}: execute_result lacks {sorted(missing)} (has {sorted(have)})")
        if "display_mimes" in expect:
            displays = _outputs(cell, "display_data")
            if not any(set(expect["display_mimes"]) <= set(d.get("data", {})) for d in displays):
                got = [sorted(d.get("data", {})) for d in displays]
                failures.append(f"{where}: no display_data with {expect['display_mimes']} (got {got})")
        if expect.get("no_outputs") and cell.get("outputs"):
            failures.append(f"{where}: expected no outputs, got {[o.output_type for o in cell.outputs]}")
    if counts and counts != list(range(1, len(counts) + 1)):
        failures.append(f"execution counts {counts}, expected 1..{len(counts)} in order")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--url", default=os.environ.get("COMMONLAB_TEST_URL"),
                        help="server base URL (default: $COMMONLAB_TEST_URL)")
    parser.add_argument("--token", default=os.environ.get("COMMONLAB_TEST_TOKEN"),
                        help="API token (default: $COMMONLAB_TEST_TOKEN)")
    parser.add_argument("--output", type=Path, help="where to write the executed notebook")
    parser.add_argument("--kernel", default=os.environ.get("COMMONLAB_TEST_KERNEL"),
                        help="kernelspec name (default: the notebook's, else python3)")
    parser.add_argument("--timeout", type=int, default=120, help="per-cell timeout in seconds")
    args = parser.parse_args(argv)
    if not args.url or args.token is None:
        parser.error("give --url and --token, or set COMMONLAB_TEST_URL and COMMONLAB_TEST_TOKEN")

    configure_gateway(args.url, args.token)
    output = args.output or args.notebook.with_suffix(".executed.ipynb")
    try:
        nb = execute_notebook(args.notebook, args.kernel, args.timeout)
    except CellExecutionError as e:
        print(f"nbclient_run: a cell raised:\n{e}", file=sys.stderr)
        return 1
    except Exception as e:  # server refused, kernel failed to start, websocket closed, …
        print(f"nbclient_run: execution failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    nbformat.write(nb, output)
    failures = check_expectations(nb)
    for failure in failures:
        print(f"nbclient_run: FAIL {failure}", file=sys.stderr)
    code_cells = sum(1 for c in nb.cells if c.cell_type == "code")
    print(f"nbclient_run: {code_cells} code cells executed, {len(failures)} failed expectations; wrote {output}")
    return 1 if failures else 0


if __name__ == "__main__":
    # Make "nbclient_run.AuthenticatedGatewayKernelClient" importable by name when run as a script.
    sys.modules.setdefault("nbclient_run", sys.modules[__name__])
    sys.exit(main())
