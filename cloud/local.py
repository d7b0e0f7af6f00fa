"""Local stand-ins for AWS: moto's HTTP server on loopback, for the tests, the demo and the notebooks.

``moto_server()`` starts the real ``moto_server`` process on 127.0.0.1 and a free port and stops it on exit; with
``aws_env(endpoint)`` applied, every boto3 client (and so the SageMaker SDK) talks to it, unchanged.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

FAKE_ACCOUNT_ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers (any HTTP status) or fail with the reason."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before answering at {url}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing answered at {url} within {timeout:.0f}s")


def aws_env(endpoint: str, region: str = "us-east-1") -> dict[str, str]:
    """Environment that points every boto3 client at ``endpoint`` with throwaway credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
    }


@contextmanager
def moto_server(port: int | None = None, log_path: str | None = None) -> Iterator[str]:
    """Run ``moto_server`` on 127.0.0.1; yields its endpoint URL and always stops the process."""
    port = port or free_port()
    executable = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
    if executable is None:
        raise RuntimeError("moto_server not found: install the dev requirements (moto[server])")
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen([executable, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log,
                               start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{endpoint}/moto-api/", process=process)
        yield endpoint
    finally:
        stop(process)
        if log_path:
            log.close()


def stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate a process group started with ``start_new_session=True``, escalating to SIGKILL."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
