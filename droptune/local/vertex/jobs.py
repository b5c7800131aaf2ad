"""CustomJobs: create, get, list, cancel; each job runs worker pool 0 as a local process.

Vertex AI runs every replica of every worker pool; locally a job runs exactly one replica
(workerpool0-0), and a request for more pools or replicas is refused with a 400 rather than
run smaller than asked. The process gets the environment Vertex gives a training container
(`AIP_MODEL_DIR`, `AIP_CHECKPOINT_DIR`, `AIP_TENSORBOARD_LOG_DIR`, `CLUSTER_SPEC`,
`CLOUD_ML_JOB_ID`); its output goes to `root/jobs/ID/workerpool0-0.log` and, when the job
ends, to `<baseOutputDirectory>/training/job.log` too.

States move as Vertex reports them: PENDING -> RUNNING -> SUCCEEDED | FAILED, or
CANCELLING -> CANCELLED after `:cancel`; `endTime` is set on every end state.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.cloud.aiplatform_v1.types import CustomJob, JobState

from droptune.local.processes import Process
from droptune.local.vertex import ids, outputs, schema
from droptune.local.vertex.errors import invalid, not_found, precondition
from droptune.local.vertex.filters import matches
from droptune.local.vertex.processes import container_argv, process_env
from droptune.local.vertex.routing import ID, PARENT, Request, Route, Runtime, page
from droptune.log import get_logger
from droptune.storage import join

log = get_logger("droptune.local.vertex")
ENDED = {JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED}
REPLICA = "workerpool0-0"


def job_log(root: Path, job_id: str) -> Path:
    """Where the output of job `job_id` (the last part of its name) goes, under the server's root."""
    return root / "jobs" / job_id / f"{REPLICA}.log"


CODE_FAILED = 3  # google.rpc.Code Vertex AI reports when a replica exits non-zero
CODE_CANCELLED = 1


@dataclass
class Job:
    """A job's resource (the proto the API returns) and the process that runs it."""

    resource: Any  # aiplatform.v1.CustomJob (raw protobuf message)
    process: Process | None = None
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
            process = job.process
        if process is not None:  # the runner marks it CANCELLED once the process is gone
            threading.Thread(target=process.stop, daemon=True).start()
        return {}

    def stop_all(self, grace: float) -> None:
        """Stop every job's process (the server is stopping); waits for them."""
        with self._lock:
            running = [j.process for j in self._jobs.values() if j.process is not None]
        stoppers = [threading.Thread(target=p.stop, args=(grace,)) for p in running]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()

    # --- the process ---------------------------------------------------------------------
    def _run(self, job: Job) -> None:
        log_path = job_log(self.runtime.root, job.id)
        folder = log_path.parent
        with self._lock:
            if job.cancel_requested or self.runtime.stopping.is_set():
                self._end(job, JobState.JOB_STATE_CANCELLED, CODE_CANCELLED, "CANCELED")
                return
            spec = job.resource.job_spec.worker_pool_specs[0].container_spec
            env = process_env(self.runtime.env, schema.env_list(spec.env), vertex_env(job))
            argv = container_argv(list(spec.command), list(spec.args), env)
            try:
                job.process = Process.start(argv, env, log_path, folder / "work")
            except OSError as exc:
                message = f"The replica {REPLICA} could not start: {exc}"
                self._end(job, JobState.JOB_STATE_FAILED, CODE_FAILED, message)
                return
            job.resource.start_time.CopyFrom(schema.now())
            self._set_state(job, JobState.JOB_STATE_RUNNING)
        status = job.process.wait()
        self._copy_log(job)
        with self._lock:
            if job.cancel_requested or self.runtime.stopping.is_set():
                self._end(job, JobState.JOB_STATE_CANCELLED, CODE_CANCELLED, "CANCELED")
            elif status == 0:
                self._end(job, JobState.JOB_STATE_SUCCEEDED)
            else:
                message = (
                    f"The replica {REPLICA} exited with a non-zero status of {status}. "
                    f"Last lines of its output:\n{job.process.tail()}"
                )
                self._end(job, JobState.JOB_STATE_FAILED, CODE_FAILED, message)

    def _copy_log(self, job: Job) -> None:
        """The replica's log into the run folder, before the job says it has ended."""
        prefix = job.resource.job_spec.base_output_directory.output_uri_prefix
        if not prefix or job.process is None or self.runtime.stopping.is_set():
            return
        target = join(prefix, "training", "job.log")
        try:
            outputs.write(target, job.process.log_path.read_bytes(), self.runtime.env)
        except Exception as exc:  # a lost log copy must not hide the job's own outcome
            log.warning("job log not copied", job=job.resource.name, target=target, error=str(exc))

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
    pools = [p for p in resource.job_spec.worker_pool_specs if p.ByteSize()]
    if not resource.job_spec.worker_pool_specs:
        raise invalid("customJob.jobSpec.workerPoolSpecs is required: give at least one pool.")
    first = resource.job_spec.worker_pool_specs[0]
    if len(pools) > 1 or not first.ByteSize():
        raise invalid(
            "The local Vertex AI server runs one worker pool: give workerPoolSpecs[0] only."
        )
    if first.replica_count != 1:
        raise invalid(
            f"workerPoolSpecs[0].replicaCount is {first.replica_count}: the local Vertex AI "
            "server runs exactly one replica (replicaCount: 1)."
        )
    if not first.machine_spec.machine_type:
        raise invalid("workerPoolSpecs[0].machineSpec.machineType is required.")
    if first.HasField("python_package_spec"):
        raise invalid(
            "workerPoolSpecs[0].pythonPackageSpec is not supported locally: use containerSpec."
        )
    if not first.container_spec.image_uri:
        raise invalid("workerPoolSpecs[0].containerSpec.imageUri is required.")


def vertex_env(job: Job) -> dict[str, str]:
    """The environment Vertex AI gives the container of replica workerpool0-0."""
    project = job.resource.name.split("/")[1]
    env = {
        "CLOUD_ML_JOB_ID": job.id,
        "CLOUD_ML_PROJECT_ID": project,
        "CLUSTER_SPEC": json.dumps(
            {
                "cluster": {"workerpool0": ["127.0.0.1:2222"]},
                "environment": "cloud",
                "task": {"type": "workerpool0", "index": 0},
            }
        ),
    }
    prefix = job.resource.job_spec.base_output_directory.output_uri_prefix
    if prefix:
        env["AIP_MODEL_DIR"] = join(prefix, "model/")
        env["AIP_CHECKPOINT_DIR"] = join(prefix, "checkpoints/")
        env["AIP_TENSORBOARD_LOG_DIR"] = join(prefix, "logs/")
    return env
