"""CustomJobs: create, get, list, cancel; each replica of a job runs as a local process.

Vertex AI runs every replica of every worker pool on machines of its own; locally each
replica of pools 0 (the primary, one replica) and 1 (the other workers) is a process on this
machine, addressed as 127.0.0.1 with a port of its own in `CLUSTER_SPEC`, so data-parallel
training runs as it would on several machines. Pools 2 and 3 (reduction servers, evaluators)
are refused with a 400 rather than run smaller than asked. Each process gets the environment
Vertex gives a training container (`AIP_MODEL_DIR`, `AIP_CHECKPOINT_DIR`,
`AIP_TENSORBOARD_LOG_DIR`, `CLUSTER_SPEC`, `CLOUD_ML_JOB_ID`); its output goes to
`root/jobs/ID/<replica>.log` (`workerpool0-0.log` for the primary) and, when the job ends,
into `<baseOutputDirectory>/training/`: `job.log` for the primary, `job-<replica>.log` for
the others.

States move as Vertex reports them: PENDING -> RUNNING -> SUCCEEDED (every replica exited
0) | FAILED (one did not: the others are stopped), or CANCELLING -> CANCELLED after `:cancel`;
`endTime` is set on every end state.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.cloud.aiplatform_v1.types import CustomJob, JobState

from droptune.local.processes import Process
from droptune.local.storage_emulator import free_port
from droptune.local.vertex import ids, outputs, schema
from droptune.local.vertex.errors import invalid, not_found, precondition
from droptune.local.vertex.filters import matches
from droptune.local.vertex.processes import container_argv, process_env
from droptune.local.vertex.routing import ID, PARENT, Request, Route, Runtime, page
from droptune.log import get_logger
from droptune.storage import join

log = get_logger("droptune.local.vertex")
ENDED = {JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED}
PRIMARY = "workerpool0-0"
POOLS = ("workerpool0", "workerpool1")  # the primary and the workers; 2 and 3 are not run
POLL_SECONDS = 0.2


def job_log(root: Path, job_id: str, replica: str = PRIMARY) -> Path:
    """Where the output of a replica of job `job_id` (the last part of its name) goes, under
    the server's root."""
    return root / "jobs" / job_id / f"{replica}.log"


CODE_FAILED = 3  # google.rpc.Code Vertex AI reports when a replica exits non-zero
CODE_CANCELLED = 1


@dataclass
class Job:
    """A job's resource (the proto the API returns) and the process that runs it."""

    resource: Any  # aiplatform.v1.CustomJob (raw protobuf message)
    processes: dict[str, Process] = field(default_factory=dict)  # by replica: "workerpool1-0"
    cancel_requested: bool = False
    runner: threading.Thread | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.resource.name.rsplit("/", 1)[1]


class CustomJobs:
    """The `customJobs` collection of every project and location."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def routes(self) -> list[Route]:
        jobs = PARENT + "/customJobs"
        return [
            Route.of("POST", jobs, self.create),
            Route.of("GET", jobs, self.list),
            Route.of("GET", jobs + "/" + ID, self.get),
            Route.of("POST", jobs + "/" + ID + ":cancel", self.cancel),
        ]

    # --- API methods ---------------------------------------------------------------------
    def create(self, request: Request) -> dict[str, Any]:
        resource = schema.parse(request.body, CustomJob, "CustomJob")
        check_spec(resource)
        resource.name = f"{request.params['parent']}/customJobs/{ids.new_id()}"
        resource.state = JobState.JOB_STATE_PENDING
        resource.create_time.CopyFrom(schema.now())
        resource.update_time.CopyFrom(resource.create_time)
        job = Job(resource)
        with self._lock:
            self._jobs[resource.name] = job
            answer = schema.to_json(resource)
        log.info("custom job created", job=resource.name, state="JOB_STATE_PENDING")
        job.runner = threading.Thread(target=self._run, args=(job,), daemon=True)
        job.runner.start()
        return answer

    def get(self, request: Request) -> dict[str, Any]:
        with self._lock:
            return schema.to_json(self._find(request).resource)

    def list(self, request: Request) -> dict[str, Any]:
        prefix = request.params["parent"] + "/customJobs/"
        with self._lock:
            found = [
                schema.to_json(j.resource) for n, j in self._jobs.items() if n.startswith(prefix)
            ]
        found = [job for job in found if matches(request.query.get("filter"), job)]
        return page(found, request.query, "customJobs")

    def cancel(self, request: Request) -> dict[str, Any]:
        with self._lock:
            job = self._find(request)
            if job.resource.state in ENDED or job.cancel_requested:
                state = JobState(job.resource.state).name
                raise precondition(f"Cannot cancel CustomJob {job.resource.name} in state {state}.")
            job.cancel_requested = True
            self._set_state(job, JobState.JOB_STATE_CANCELLING)
            processes = list(job.processes.values())
        for process in processes:  # the runner marks it CANCELLED once they are gone
            threading.Thread(target=process.stop, daemon=True).start()
        return {}

    def stop_all(self, grace: float) -> None:
        """Stop every job's process (the server is stopping); waits for them."""
        with self._lock:
            running = [p for j in self._jobs.values() for p in j.processes.values()]
        stoppers = [threading.Thread(target=p.stop, args=(grace,)) for p in running]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()

    # --- the process ---------------------------------------------------------------------
    def _run(self, job: Job) -> None:
        with self._lock:
            if job.cancel_requested or self.runtime.stopping.is_set():
                self._end(job, JobState.JOB_STATE_CANCELLED, CODE_CANCELLED, "CANCELED")
                return
            cluster = local_cluster(job.resource)
            for pool, addresses in cluster.items():
                spec = job.resource.job_spec.worker_pool_specs[POOLS.index(pool)].container_spec
                for index in range(len(addresses)):
                    replica = f"{pool}-{index}"
                    task = {"type": pool, "index": index}
                    env = process_env(
                        self.runtime.env, schema.env_list(spec.env), vertex_env(job, cluster, task)
                    )
                    argv = container_argv(list(spec.command), list(spec.args), env)
                    log_path = job_log(self.runtime.root, job.id, replica)
                    try:
                        job.processes[replica] = Process.start(
                            argv, env, log_path, log_path.parent / "work" / replica
                        )
                    except OSError as exc:
                        for started in job.processes.values():
                            started.stop()
                        message = f"The replica {replica} could not start: {exc}"
                        self._end(job, JobState.JOB_STATE_FAILED, CODE_FAILED, message)
                        return
            job.resource.start_time.CopyFrom(schema.now())
            self._set_state(job, JobState.JOB_STATE_RUNNING)
        failed = self._wait(job)
        self._copy_logs(job)
        with self._lock:
            if job.cancel_requested or self.runtime.stopping.is_set():
                self._end(job, JobState.JOB_STATE_CANCELLED, CODE_CANCELLED, "CANCELED")
            elif failed is None:
                self._end(job, JobState.JOB_STATE_SUCCEEDED)
            else:
                replica, status = failed
                message = (
                    f"The replica {replica} exited with a non-zero status of {status}. "
                    f"Last lines of its output:\n{job.processes[replica].tail()}"
                )
                self._end(job, JobState.JOB_STATE_FAILED, CODE_FAILED, message)

    @staticmethod
    def _wait(job: Job) -> tuple[str, int] | None:
        """Until every replica has exited (None) or one has failed: that one and its status,
        once the others are stopped, as Vertex ends a job when a replica fails."""
        while True:
            running = False
            for replica, process in job.processes.items():
                status = process.poll()
                if status is None:
                    running = True
                elif status != 0:
                    for other in job.processes.values():
                        other.stop()
                    return replica, status
            if not running:
                return None
            time.sleep(POLL_SECONDS)

    def _copy_logs(self, job: Job) -> None:
        """The replicas' logs into the run folder, before the job says it has ended."""
        prefix = job.resource.job_spec.base_output_directory.output_uri_prefix
        if not prefix or self.runtime.stopping.is_set():
            return
        for replica, process in job.processes.items():
            name = "job.log" if replica == PRIMARY else f"job-{replica}.log"
            target = join(prefix, "training", name)
            try:
                outputs.write(target, process.log_path.read_bytes(), self.runtime.env)
            except Exception as exc:  # a lost log copy must not hide the job's own outcome
                log.warning(
                    "job log not copied", job=job.resource.name, target=target, error=str(exc)
                )

    def _end(self, job: Job, state: JobState, code: int = 0, message: str = "") -> None:
        if code:
            job.resource.error.code = code
            job.resource.error.message = message
        job.resource.end_time.CopyFrom(schema.now())
        self._set_state(job, state)

    def _set_state(self, job: Job, state: JobState) -> None:
        job.resource.state = state
        job.resource.update_time.CopyFrom(schema.now())
        log.info("custom job state", job=job.resource.name, state=JobState(state).name)

    def _find(self, request: Request) -> Job:
        name = f"{request.params['parent']}/customJobs/{request.params['id']}"
        job = self._jobs.get(name)
        if job is None:
            raise not_found(f"CustomJob {name}")
        return job


def check_spec(resource: Any) -> None:
    """Refuse, with a message saying what is missing, what Vertex or this server can't run."""
    if not resource.display_name:
        raise invalid("customJob.displayName is required.")
    specs = resource.job_spec.worker_pool_specs
    if not specs:
        raise invalid("customJob.jobSpec.workerPoolSpecs is required: give at least one pool.")
    if not specs[0].ByteSize():
        raise invalid("workerPoolSpecs[0] (the primary replica) is required.")
    if any(pool.ByteSize() for pool in specs[len(POOLS) :]):
        raise invalid(
            "The local Vertex AI server runs workerPoolSpecs[0] and [1] (primary and workers): "
            "reduction servers (2) and evaluators (3) are not run locally."
        )
    if specs[0].replica_count != 1:
        raise invalid(
            f"workerPoolSpecs[0].replicaCount is {specs[0].replica_count}: the primary pool has "
            "exactly one replica (replicaCount: 1); put more machines in workerPoolSpecs[1]."
        )
    for number, pool in enumerate(specs[: len(POOLS)]):
        if not pool.ByteSize():
            continue
        where = f"workerPoolSpecs[{number}]"
        if pool.replica_count < 1:
            raise invalid(f"{where}.replicaCount must be at least 1.")
        if not pool.machine_spec.machine_type:
            raise invalid(f"{where}.machineSpec.machineType is required.")
        if pool.HasField("python_package_spec"):
            raise invalid(f"{where}.pythonPackageSpec is not supported locally: use containerSpec.")
        if not pool.container_spec.image_uri:
            raise invalid(f"{where}.containerSpec.imageUri is required.")


def local_cluster(resource: Any) -> dict[str, list[str]]:
    """`CLUSTER_SPEC`'s cluster for this machine: every replica at 127.0.0.1, each its port."""
    specs = resource.job_spec.worker_pool_specs
    return {
        pool: [f"127.0.0.1:{free_port()}" for _ in range(specs[number].replica_count)]
        for number, pool in enumerate(POOLS)
        if number < len(specs) and specs[number].ByteSize()
    }


def vertex_env(job: Job, cluster: dict[str, list[str]], task: dict[str, Any]) -> dict[str, str]:
    """The environment Vertex AI gives the container of replica `task` (type and index)."""
    project = job.resource.name.split("/")[1]
    env = {
        "CLOUD_ML_JOB_ID": job.id,
        "CLOUD_ML_PROJECT_ID": project,
        "CLUSTER_SPEC": json.dumps({"cluster": cluster, "environment": "cloud", "task": task}),
    }
    prefix = job.resource.job_spec.base_output_directory.output_uri_prefix
    if prefix:
        env["AIP_MODEL_DIR"] = join(prefix, "model/")
        env["AIP_CHECKPOINT_DIR"] = join(prefix, "checkpoints/")
        env["AIP_TENSORBOARD_LOG_DIR"] = join(prefix, "logs/")
    return env
