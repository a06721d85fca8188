"""Where a grid's runs execute: worker processes here, or Ray tasks on a cluster.

Every executor runs each RunSpec in the same fresh worker process as `benchmarks.run`
(`harness.run_in_worker`) and hands its record back to the driver, which alone writes the
report folder. Each record it returns carries an `execution` section: the executor, the
node (host name) and device it ran on, and `exclusive_timing`: whether the run had its
device to itself, so that its timings are comparable.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.record import schema
from benchmarks.runner.config import RunSpec, failed_record
from benchmarks.runner.harness import run_in_worker

EXECUTORS = ("local", "ray")
# Seconds to wait for a Ray head's port before calling it unreachable.
RAY_CONNECT_TIMEOUT_S = 5.0

Finished = tuple[RunSpec, dict[str, Any]]


class ExecutorUnavailable(ValueError):
    """The executor cannot start (Ray missing, its head unreachable); one line says why."""


def execution_section(executor: str, node: str, record: dict[str, Any], exclusive: bool,
                      **details: Any) -> dict[str, Any]:
    """The record's `execution` section.

    Args:
        executor: "local" or "ray".
        node: the host the run's worker ran on.
        record: the run's record (its `env.device`, where the worker got that far).
        exclusive: whether no other run shared the run's device while it ran.
        details: executor-specific facts (jobs, Ray node id and resources).
    """
    device = (record.get(schema.ENV) or {}).get("device")
    return {"executor": executor, "node": node, "device": device,
            "exclusive_timing": exclusive, **details}


class LocalExecutor:
    """Runs on this machine, `jobs` worker processes at a time.

    With one job the runs have the machine to themselves, as `benchmarks.run`'s do; with
    more they share its cores, and their records say their timings were not exclusive.
    """

    def __init__(self, jobs: int = 1) -> None:
        if not isinstance(jobs, int) or not 1 <= jobs <= (os.cpu_count() or 1):
            raise ExecutorUnavailable(f"--jobs must be an integer in [1, {os.cpu_count()}], "
                                      f"this machine's logical cores. Received: --jobs={jobs}")
        self.jobs = jobs

    def describe(self) -> str:
        return f"local, {self.jobs} job{'s' if self.jobs > 1 else ''} at a time"

    def run(self, specs: Sequence[RunSpec], on_line: Callable[[str], None]) -> Iterator[Finished]:
        """Yields (spec, record) of each run as it finishes.

        One job runs in this thread, so Ctrl-C stops its worker as in `benchmarks.run`
        (harness.RunInterrupted carries the interrupted run's record).
        """
        node = socket.gethostname()
        if self.jobs == 1:
            for spec in specs:
                record = run_in_worker(spec, on_line)
                yield spec, self._mark(record, node)
            return
        # The workers print nothing here: N interleaved progress streams are noise.
        with ThreadPoolExecutor(self.jobs) as pool:
            running = {pool.submit(run_in_worker, spec, lambda line: None): spec
                       for spec in specs}
            try:
                while running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield running.pop(future), self._mark(future.result(), node)
            finally:
                for future in running:
                    future.cancel()

    def _mark(self, record: dict[str, Any], node: str) -> dict[str, Any]:
        return {**record, schema.EXECUTION: execution_section(
            "local", node, record, self.jobs == 1, jobs=self.jobs)}


def _ray_module():
    try:
        import ray
    except ImportError:
        raise ExecutorUnavailable("--executor ray needs Ray, which is not installed: "
                                  "pip install -e '.[ray]'") from None
    return ray


def _check_reachable(address: str) -> None:
    """Raises ExecutorUnavailable unless HOST:PORT accepts a connection (Ray's own client
    retries for a minute or more before it gives up)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorUnavailable(f"--address must be auto or HOST:PORT (a Ray head's GCS "
                                  f"port, 6379 by default). Received: --address={address}")
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise ExecutorUnavailable(f"the Ray head at {address} cannot be reached "
                                  f"({error.strerror or error}): start it with `ray start "
                                  "--head` and pass the address it prints") from None


def _ray_run(spec_json: str, prepared: bytes) -> tuple[dict[str, Any], str, str]:
    """The Ray task: one run in a fresh worker on whichever node Ray chose.

    The prepared data travel in Ray's object store, so a node needs only the checkout and
    its frameworks, not the driver's cache.

    Returns:
        The record, the node's host name and its Ray node id.
    """
    import ray

    with tempfile.TemporaryDirectory(prefix="ferbench-ray-") as folder:
        path = Path(folder) / "prepared.npz"
        path.write_bytes(prepared)
        spec = replace(RunSpec.from_json(spec_json), prepared_data=str(path))
        record = run_in_worker(spec, lambda line: None)
    return record, socket.gethostname(), ray.get_runtime_context().get_node_id()


class RayExecutor:
    """Runs every run as a Ray task asking for `num_cpus` CPUs and `num_gpus` GPUs.

    A run's timings count as exclusive when its task held a whole GPU, or every CPU of
    its node.
    """

    def __init__(self, address: str | None, num_gpus: int = 0) -> None:
        """Connects to Ray.

        Args:
            address: "auto" (the cluster this machine belongs to), HOST:PORT of a head
                node, or None: the Ray instance this process already started, else a new
                local one.
            num_gpus: GPUs per run.

        Raises:
            ExecutorUnavailable: Ray is not installed or the cluster cannot be reached.
        """
        self.ray = _ray_module()
        self.num_gpus = num_gpus
        if address is not None and address != "auto":
            _check_reachable(address)
        if not self.ray.is_initialized():
            try:
                self.ray.init(address=address, log_to_driver=False)
            except (ConnectionError, RuntimeError) as error:
                first = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise ExecutorUnavailable(f"no Ray cluster at --address {address}: "
                                          f"{first}") from None
        self.node_cpus = {node["NodeID"]: node["Resources"].get("CPU", 0)
                          for node in self.ray.nodes() if node.get("Alive")}
        # Prepared-data file → its object in Ray's store, put once: a search calls `run`
        # once or twice per trial with the same data.
        self.shipped: dict[str, Any] = {}

    def describe(self) -> str:
        cpus = sum(self.node_cpus.values())
        return f"ray, {len(self.node_cpus)} node(s), {cpus:g} CPUs"

    def run(self, specs: Sequence[RunSpec], on_line: Callable[[str], None]) -> Iterator[Finished]:
        """Submits every run, then yields (spec, record) of each as it finishes.

        Ctrl-C cancels the runs not yet finished.
        """
        task = self.ray.remote(_ray_run)
        pending = {}
        for spec in specs:
            if spec.prepared_data not in self.shipped:
                self.shipped[spec.prepared_data] = self.ray.put(
                    Path(spec.prepared_data).read_bytes())
            ref = task.options(num_cpus=spec.threads, num_gpus=self.num_gpus).remote(
                spec.to_json(), self.shipped[spec.prepared_data])
            pending[ref] = spec
        try:
            while pending:
                done, _ = self.ray.wait(list(pending), num_returns=1)
                spec = pending.pop(done[0])
                yield spec, self._finished(spec, done[0])
        finally:
            for ref in pending:
                self.ray.cancel(ref, force=True)

    def _finished(self, spec: RunSpec, ref) -> dict[str, Any]:
        try:
            record, node, node_id = self.ray.get(ref)
        except self.ray.exceptions.RayError as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            record = failed_record(spec, f"Ray task failed: {first}", "")
            return {**record, schema.EXECUTION: execution_section(
                "ray", "unknown", record, False, num_cpus=spec.threads, num_gpus=self.num_gpus)}
        whole_node = spec.threads >= self.node_cpus.get(node_id, float("inf"))
        return {**record, schema.EXECUTION: execution_section(
            "ray", node, record, self.num_gpus >= 1 or whole_node, node_id=node_id,
            num_cpus=spec.threads, num_gpus=self.num_gpus)}
