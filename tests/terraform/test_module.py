"""terraform/ parses, documents its inputs, and wires the units together as the contracts say.

The chain under test: uploads bucket -> (finalize event) upload function -> (DROPTUNE_TOPIC)
run topic -> Eventarc trigger -> pipeline workflow -> (its environment) runs bucket, trainer
image, trainer service account, evaluation function.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.terraform.module import ROOT, TERRAFORM, block, load, parse, ref

TF_FILES = sorted(TERRAFORM.rglob("*.tf"))
WORKFLOW = ROOT / "workflows" / "pipeline.workflows.yaml"
FUNCTIONS = ROOT / "functions" / "main.py"
FINALIZED = "google.cloud.storage.object.v1.finalized"
# Read by the workflow only in local mode, where droptune's local stack sets it.
LOCAL_ONLY_ENV = {"DROPTUNE_VERTEX_API"}


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_every_file_parses(path):
    assert parse(path), f"{path} is empty"


def test_the_issue_layout_is_there():
    names = {p.name for p in TERRAFORM.glob("*.tf")}
    expected = {"versions.tf", "variables.tf", "outputs.tf", "apis.tf", "storage.tf"}
    expected |= {"function.tf", "pubsub.tf", "workflow.tf", "iam.tf"}
    expected |= {"artifact_registry.tf", "monitoring.tf"}
    assert expected <= names
    assert (TERRAFORM / "examples" / "basic" / "terraform.tfvars.example").is_file()


@pytest.mark.parametrize("directory", [TERRAFORM, TERRAFORM / "examples" / "basic"])
def test_every_variable_has_a_description_and_a_type(directory):
    variables = load(directory).variables
    assert variables
    for name, spec in variables.items():
        assert spec.get("description", "").strip(), f"variable {name} has no description"
        assert "type" in spec, f"variable {name} has no type"


def test_example_root_sets_only_known_inputs_and_every_required_one():
    example = parse(TERRAFORM / "examples" / "basic" / "main.tf")
    (call,) = [m["droptune"] for m in example["module"]]
    assert call["source"] == "../.."
    arguments = set(call) - {"source"}
    variables = load().variables
    assert arguments <= set(variables), arguments - set(variables)
    required = {name for name, spec in variables.items() if "default" not in spec}
    assert required <= arguments
    providers = {name for entry in example["provider"] for name in entry}
    assert providers == {"google", "google-beta"}


@pytest.mark.parametrize(
    "prefix,valid",
    [("droptune", True), ("dt1", True), ("a" * 18, True), ("ab", False), ("a" * 19, False),
     ("dt-", False), ("1dt", False), ("Dt1", False)],
)  # fmt: skip
def test_name_prefix_fits_every_name_it_starts(prefix: str, valid: bool):
    """Service account ids (6-30 characters with the longest suffix) and the Artifact Registry
    repository, named by the prefix alone (it must end with a letter or digit)."""
    (rule,) = load().variables["name_prefix"]["validation"]
    pattern = re.search(r'regex\("(.+?)", var\.name_prefix\)', rule["condition"]).group(1)
    assert bool(re.fullmatch(pattern, prefix)) is valid
    if valid:
        assert 6 <= len(f"{prefix}-evaluation") <= 30


def test_every_output_has_a_description():
    for name, spec in load().outputs.items():
        assert spec.get("description", "").strip(), f"output {name} has no description"


def test_outputs_give_the_buckets_the_drop_command_and_the_console_urls():
    outputs = load().outputs
    assert {"uploads_bucket", "runs_bucket", "upload_command"} <= set(outputs)
    assert {"workflow_url", "dashboard_url"} <= set(outputs)
    assert outputs["upload_command"]["value"].startswith("gcloud storage cp FILE gs://")
    assert "google_storage_bucket.uploads.name" in outputs["upload_command"]["value"]


# --- uploads bucket -> upload function -> run topic ----------------------------------------


def test_upload_function_runs_on_finalize_events_of_the_uploads_bucket():
    function = load().resource("google_cloudfunctions2_function.upload")
    trigger = block(function["event_trigger"])
    assert trigger["event_type"] == FINALIZED
    assert f'FINALIZED = "{FINALIZED}"' in FUNCTIONS.read_text()
    (only_filter,) = trigger["event_filters"]
    assert only_filter == {"attribute": "bucket", "value": "${google_storage_bucket.uploads.name}"}
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    assert ref(trigger["service_account_email"]) == "google_service_account.eventarc.email"


def test_upload_function_environment_names_the_topic_and_the_buckets():
    function = load().resource("google_cloudfunctions2_function.upload")
    env = block(function["service_config"])["environment_variables"]
    assert ref(env["DROPTUNE_TOPIC"]) == "google_pubsub_topic.runs.id"  # projects/P/topics/T
    assert ref(env["DROPTUNE_RUNS_BUCKET"]) == "google_storage_bucket.runs.name"
    assert ref(env["DROPTUNE_UPLOADS_BUCKET"]) == "google_storage_bucket.uploads.name"
    contract = {"DROPTUNE_DEFAULT_BACKEND", "DROPTUNE_DEFAULT_BASE_MODEL"}
    contract |= {"DROPTUNE_MAX_UPLOAD_BYTES", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION"}
    assert contract <= set(env)
    assert env["DROPTUNE_PRELOAD_TOKENIZER"] == "true"


def test_upload_function_is_sized_for_a_1_gib_upload():
    service = block(load().resource("google_cloudfunctions2_function.upload")["service_config"])
    sizing = load().variables["upload_function"]["type"]
    assert '"4Gi"' in sizing and "540" in sizing
    assert ref(service["available_memory"]) == "var.upload_function.memory"
    assert ref(service["timeout_seconds"]) == "var.upload_function.timeout_seconds"
    assert ref(service["max_instance_count"]) == "var.upload_function.max_instances"
    assert service["max_instance_request_concurrency"] == 1
    assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"


def test_both_functions_are_built_from_the_function_source():
    module = load()
    for name, entry_point in (("upload", "on_upload"), ("evaluate", "evaluate")):
        build = block(module.resource(f"google_cloudfunctions2_function.{name}")["build_config"])
        assert build["entry_point"] == entry_point
        source = block(block(build["source"])["storage_source"])
        assert ref(source["object"]) == "google_storage_bucket_object.function_source.name"
        assert ref(build["service_account"]) == "google_service_account.build.id"
    archive = module.data["archive_file"]["function_source"]
    assert ref(archive["source_dir"]) == "local.function_source_dir"
    assert "/build/function" in module.locals["function_source_dir"]
    assert "function-source:" in (ROOT / "Makefile").read_text()


def test_function_entry_points_exist_in_the_function_source():
    source = FUNCTIONS.read_text()
    for name in (
        "google_cloudfunctions2_function.upload",
        "google_cloudfunctions2_function.evaluate",
    ):
        entry_point = block(load().resource(name)["build_config"])["entry_point"]
        assert re.search(rf"^def {entry_point}\(", source, re.M), (
            f"functions/main.py defines no {entry_point}()"
        )


def test_evaluation_function_is_http_and_private():
    module = load()
    function = module.resource("google_cloudfunctions2_function.evaluate")
    assert "event_trigger" not in function
    service = block(function["service_config"])
    assert service["environment_variables"]["GOOGLE_GENAI_USE_VERTEXAI"] == "true"
    assert ref(service["environment_variables"]["DROPTUNE_RUNS_BUCKET"]) == (
        "google_storage_bucket.runs.name"
    )
    assert ref(service["timeout_seconds"]) == "var.evaluation_function.timeout_seconds"
    assert "3600" in module.variables["evaluation_function"]["type"]  # HTTP functions' limit
    # Internal only: Cloud Workflows in the same project reaches such a function at its run.app
    # URL, which is what the workflow is given (service_config.uri, checked below).
    assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    invokers = [
        body
        for _, body in module.each("google_cloud_run_v2_service_iam_member")
        if body["name"] == "${google_cloudfunctions2_function.evaluate.name}"
    ]
    assert [ref(b["member"]) for b in invokers] == ["google_service_account.workflow.member"]
    assert [b["role"] for b in invokers] == ["roles/run.invoker"]


# --- run topic -> Eventarc -> workflow ------------------------------------------------------


def test_run_topic_starts_the_workflow_through_eventarc():
    trigger = load().resource("google_eventarc_trigger.workflow")
    criteria = block(trigger["matching_criteria"])
    assert criteria == {
        "attribute": "type",
        "value": "google.cloud.pubsub.topic.v1.messagePublished",
    }
    pubsub = block(block(trigger["transport"])["pubsub"])
    assert ref(pubsub["topic"]) == "google_pubsub_topic.runs.id"
    assert ref(block(trigger["destination"])["workflow"]) == "google_workflows_workflow.pipeline.id"
    assert ref(trigger["service_account"]) == "google_service_account.eventarc.email"


def test_undeliverable_run_messages_go_to_the_dead_letter_topic():
    module = load()
    dead_letter = module.resource("terraform_data.workflow_dead_letter")
    command = block(dead_letter["provisioner"])["local-exec"]["command"]
    assert "--dead-letter-topic=${google_pubsub_topic.dead_letter.id}" in command
    assert "google_eventarc_trigger.workflow.transport[0].pubsub[0].subscription" in command
    subscription = module.resource("google_pubsub_subscription.dead_letter")
    assert ref(subscription["topic"]) == "google_pubsub_topic.dead_letter.id"


def test_workflow_runs_the_pipeline_file():
    module = load()
    workflow = module.resource("google_workflows_workflow.pipeline")
    assert ref(workflow["source_contents"]) == "file(local.workflow_file)"
    assert module.locals["workflow_file"].endswith("/workflows/pipeline.workflows.yaml")
    assert ref(workflow["service_account"]) == "google_service_account.workflow.id"


def test_workflow_environment_points_at_the_buckets_images_and_accounts():
    module = load()
    env = module.locals["workflow_env"]
    assert ref(env["DROPTUNE_RUNS_BUCKET"]) == "google_storage_bucket.runs.name"
    assert ref(env["DROPTUNE_TRAINER_IMAGE"]) == "local.trainer_image"
    assert ref(env["DROPTUNE_JOB_SERVICE_ACCOUNT"]) == "google_service_account.trainer.email"
    assert ref(env["DROPTUNE_EVALUATION_URL"]) == (
        "google_cloudfunctions2_function.evaluate.service_config[0].uri"
    )
    assert ref(env["DROPTUNE_REGION"]) == "var.region"
    # Each deployment its own endpoint, unless one is named: two stacks never retire each
    # other's models.
    assert "coalesce(var.endpoint_id, var.name_prefix)" in env["DROPTUNE_ENDPOINT_ID"]
    assert (
        "local.workflow_env"
        in module.resource("google_workflows_workflow.pipeline")["user_env_vars"]
    )


def test_workflow_gets_every_setting_it_reads():
    source = WORKFLOW.read_text()
    yaml.safe_load(source)  # a file the workflow resource can deploy
    read = set(re.findall(r'sys\.get_env\("(DROPTUNE_[A-Z_]+)"\)', source))
    assert read, "the workflow reads no DROPTUNE_* setting"
    module = load()
    provided = set(module.locals["workflow_env"]) | set(module.locals["workflow_env_optional"])
    missing = read - provided - LOCAL_ONLY_ENV
    assert not missing, f"the workflow reads {sorted(missing)} but Terraform does not set them"


def test_trainer_image_is_built_from_the_dockerfile_with_the_repository_as_context():
    build = yaml.safe_load((TERRAFORM / "cloudbuild" / "trainer.yaml").read_text())
    (step,) = build["steps"]
    assert step["args"][:3] == ["build", "-f", "trainer/Dockerfile"]
    assert step["args"][-1] == "."
    assert build["images"] == ["${_IMAGE}"]
    ignore = (TERRAFORM / "cloudbuild" / "trainer.gcloudignore").read_text().split()
    copied = re.findall(r"^COPY (.+) \S+$", (ROOT / "trainer" / "Dockerfile").read_text(), re.M)
    for sources in copied:
        for path in sources.split():
            assert f"!/{path}" in ignore or f"!/{path}/" in ignore, f"{path} is not uploaded"
    command = block(load().resource("terraform_data.trainer_image")["provisioner"])
    command = command["local-exec"]["command"]
    assert "--config=terraform/cloudbuild/trainer.yaml" in command
    assert "--service-account=${google_service_account.build.id}" in command


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not on PATH")
def test_terraform_fmt_finds_nothing_to_change():
    result = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
