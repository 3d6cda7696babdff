"""Start vLLM's OpenAI-compatible server as a separate process, and always stop it.

vLLM pins its own torch and transformers, so it usually lives in its own virtual
environment: ``python`` is that environment's interpreter. The server runs
``python -m vllm.entrypoints.openai.api_server`` (the module works where the ``vllm``
console script does not), in its own process group so that stopping it also stops its
workers. `VllmServer` is a context manager: the server is stopped on exit, also on an
error or Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


class ServerError(RuntimeError):
    """The server did not start or died."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VllmServer:
    def __init__(self, python: str, model: str, *, served_name: str = "model", lora: dict | None = None,
                 max_model_len: int = 512, dtype: str = "auto", memory_fraction: float = 0.4,
                 extra_args: list | None = None,
                 start_timeout_s: float = 600.0, log_path: str | Path | None = None):
        if not Path(python).is_file():
            raise ServerError(f"serve.vllm_python: '{python}' not found (install vLLM in its own environment)")
        self.python, self.model, self.served_name = python, model, served_name
        self.lora = lora or {}
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.args = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
                     "--served-model-name", served_name, "--host", "127.0.0.1", "--port", str(self.port),
                     "--max-model-len", str(max_model_len), "--dtype", dtype,
                     # On CPU this is the fraction of the NUMA node's memory for weights + KV cache.
                     "--gpu-memory-utilization", str(memory_fraction), *(extra_args or [])]
        if self.lora:
            rank = max(int(v.get("rank", 8)) for v in self.lora.values())
            self.args += ["--enable-lora", "--max-lora-rank", str(max(8, rank)), "--lora-modules",
                          *[f"{name}={spec['path']}" for name, spec in self.lora.items()]]
        self.start_timeout_s = start_timeout_s
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self.ready_s: float | None = None

    def __enter__(self) -> "VllmServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}
        started = time.perf_counter()
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.ready_s = time.perf_counter() - started

    def _wait_ready(self) -> None:
        import requests

        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"vLLM server exited with status {self.proc.returncode} while starting"
                                  + (f"; see {self.log_path}" if self.log_path else ""))
            try:
                if requests.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(1.0)  # waiting on another process to start: a slow poll costs nothing measured
        raise ServerError(f"vLLM server not ready after {self.start_timeout_s:g} s")

    def stop(self, grace_s: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=grace_s)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=grace_s)
