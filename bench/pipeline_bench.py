"""The local pipeline's own cost beside the work it orchestrates, on the bundled demo.

Starts a fresh local stack, drops droptune/examples/tickets.jsonl (with its sidecar settings)
into the uploads bucket `--runs` times, and for each run measures:
- upload -> trainer process started (the training job's startTime), goal <= 3 s;
- the time outside the training job (validation, queueing, workflow steps, deployment,
  the smoke prediction) against the whole run's wall time, goal <= 10%;
- the whole run, goal <= 10 minutes on 2 CPU cores.
The stack's start-up is timed apart: it includes the upload function's instance start, which
preloads the default model's tokenizer (as a Cloud Run instance does before its first event).
The first run is the first upload that instance takes. The last line is JSON with every
number.

    python bench/pipeline_bench.py [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests
import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from droptune.local.home import StackConfig
from droptune.local.stack import LocalStack
from droptune.runs import ENDED, run_id_for

EXAMPLE = Path(__file__).parents[1] / "droptune" / "examples" / "tickets.jsonl"


def seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def one_run(stack: LocalStack, client: storage.Client, index: int) -> dict:
    bucket = client.bucket("droptune-uploads")
    sidecar = EXAMPLE.with_name("tickets.droptune.yaml")
    bucket.blob(f"bench{index}/tickets.droptune.yaml").upload_from_string(sidecar.read_text())
    blob = bucket.blob(f"bench{index}/tickets.jsonl")
    uploaded = time.time()
    blob.upload_from_filename(str(EXAMPLE))
    run_id = run_id_for("droptune-uploads", blob.name, blob.generation)
    while True:  # a new Blob each time: a downloaded one asks for the generation it saw
        status_blob = client.bucket("droptune-runs").get_blob(f"runs/{run_id}/status.json")
        if status_blob is not None:
            status = json.loads(status_blob.download_as_bytes())
            if status["state"] in ENDED:
                break
        time.sleep(0.2)
    ended = seconds(status["updated_at"])
    url = f"{stack.vertex.url}/v1/projects/droptune-local/locations/local/customJobs"
    (job,) = requests.get(url, params={"filter": f"labels.run_id={run_id}"}, timeout=10).json()[
        "customJobs"
    ]
    job_seconds = seconds(job["endTime"]) - seconds(job["startTime"])
    wall = ended - uploaded
    return {
        "run_id": run_id,
        "state": status["state"],
        "upload_to_trainer_s": round(seconds(job["startTime"]) - uploaded, 2),
        "validation_s": round(seconds(status["history"][1]["at"]) - uploaded, 2),
        "training_job_s": round(job_seconds, 1),
        "outside_job_s": round(wall - job_seconds, 1),
        "outside_share": round((wall - job_seconds) / wall, 3),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    yaml.safe_load(EXAMPLE.with_name("tickets.droptune.yaml").read_text())  # fail early
    with tempfile.TemporaryDirectory() as home:
        started = time.time()
        with LocalStack(StackConfig(home=Path(home))) as stack:
            startup = time.time() - started
            print(f"local stack up in {startup:.1f} s", flush=True)
            client = storage.Client(
                project="droptune-local",
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": stack.storage.url},
            )
            runs = []
            for index in range(args.runs):
                runs.append(one_run(stack, client, index))
                print(
                    f"run {index + 1}: {runs[-1]['state']} in {runs[-1]['wall_s']} s; upload -> "
                    f"trainer {runs[-1]['upload_to_trainer_s']} s; outside the training job "
                    f"{runs[-1]['outside_job_s']} s = {runs[-1]['outside_share']:.1%} of the run",
                    flush=True,
                )
                stack.wait_idle(120)
    print(json.dumps({"stack_startup_s": round(startup, 2), "runs": runs}))


if __name__ == "__main__":
    main()
