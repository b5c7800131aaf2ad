"""terraform/iam.tf and every other grant: least privilege, as a security reviewer checks it.

No primitive role, no project-wide storage admin, no public member, no authoritative IAM
resource (it would drop grants made outside droptune); one service account per unit;
`iam.serviceAccountUser` only on the training job's account; the service agents get what the
pipeline needs of them (the one grant users most often miss: Vertex AI's agents reading the
runs bucket and pulling the trainer image).
"""

from __future__ import annotations

import pytest

from tests.terraform.module import TERRAFORM, block, load, ref

PRIMITIVE = {"roles/owner", "roles/editor", "roles/viewer"}
PUBLIC = {"allUsers", "allAuthenticatedUsers"}
# Every project-level grant, and why nothing narrower exists (see the comments in iam.tf).
PROJECT_GRANTS = {
    ("evaluation_vertex_predict", "${google_project_iam_custom_role.gemini_evaluator.id}"),
    ("workflow_vertex", "${google_project_iam_custom_role.workflow_vertex.id}"),
    ("workflow_log_writer", "roles/logging.logWriter"),
    ("eventarc_event_receiver", "roles/eventarc.eventReceiver"),
    ("eventarc_workflow_invoker", "roles/workflows.invoker"),
    ("trainer_log_writer", "roles/logging.logWriter"),
    ("trainer_tensorboard", "roles/aiplatform.user"),  # only with enable_tensorboard
    ("build_log_writer", "roles/logging.logWriter"),
    ("build_reads_function_sources", "roles/storage.objectViewer"),  # with a condition
    ("storage_agent_publishes_events", "roles/pubsub.publisher"),  # Eventarc's own topic
    # The agents apis.tf creates on request: Google grants their roles only on first use.
    ("vertex_agent_role", "roles/aiplatform.serviceAgent"),
    ("eventarc_agent_role", "roles/eventarc.serviceAgent"),
    ("pubsub_agent_role", "roles/pubsub.serviceAgent"),
}


def grants():
    """(address, body) of every IAM grant in the module."""
    return [(a, b) for a, b in load().each("google_") if a.split(".")[0].endswith("_iam_member")]


def test_no_authoritative_iam_resources():
    kinds = {address.split(".")[0] for address, _ in load().each("google_")}
    authoritative = {k for k in kinds if k.endswith(("_iam_binding", "_iam_policy"))}
    assert not authoritative, f"authoritative IAM would remove other grants: {authoritative}"


@pytest.mark.parametrize("address,body", grants(), ids=lambda x: x if isinstance(x, str) else "")
def test_no_primitive_role_and_no_public_member(address, body):
    assert body["role"] not in PRIMITIVE, f"{address} grants the primitive {body['role']}"
    assert body["member"] not in PUBLIC, f"{address} makes a resource public"


def test_project_level_grants_are_the_reviewed_few():
    found = {
        (name, body["role"]) for name, body in load().resources["google_project_iam_member"].items()
    }
    assert found == PROJECT_GRANTS


def test_no_project_wide_storage_grant_without_a_condition():
    for name, body in load().resources["google_project_iam_member"].items():
        role = body["role"]
        assert role not in {"roles/storage.admin", "roles/storage.objectAdmin"}, name
        if role.startswith("roles/storage."):
            condition = block(body["condition"])
            assert "resource.name.startsWith" in condition["expression"], name


def test_service_account_user_only_on_the_training_jobs_account():
    acting = [
        (address, body)
        for address, body in grants()
        if body["role"] in {"roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator"}
    ]
    users = [(a, b) for a, b in acting if b["role"] == "roles/iam.serviceAccountUser"]
    assert [a for a, _ in users] == ["google_service_account_iam_member.workflow_acts_as_trainer"]
    (_, user), *_ = users
    assert ref(user["service_account_id"]) == "google_service_account.trainer.name"
    assert ref(user["member"]) == "google_service_account.workflow.member"
    # Both only on single service accounts; token creation only for Pub/Sub's agent, only on
    # the event delivery account.
    for address, _ in acting:
        assert address.startswith("google_service_account_iam_member."), address
    creators = [b for _, b in acting if b["role"] == "roles/iam.serviceAccountTokenCreator"]
    assert [ref(b["service_account_id"]) for b in creators] == [
        "google_service_account.eventarc.name"
    ]
    assert [ref(b["member"]) for b in creators] == ["local.pubsub_agent"]


def test_one_service_account_per_unit():
    module = load()
    upload = module.resource("google_cloudfunctions2_function.upload")
    evaluate = module.resource("google_cloudfunctions2_function.evaluate")
    identities = {
        "upload function": ref(block(upload["service_config"])["service_account_email"]),
        "evaluation function": ref(block(evaluate["service_config"])["service_account_email"]),
        "workflow": ref(module.resource("google_workflows_workflow.pipeline")["service_account"]),
        "eventarc": ref(module.resource("google_eventarc_trigger.workflow")["service_account"]),
        "training job": ref(module.locals["workflow_env"]["DROPTUNE_JOB_SERVICE_ACCOUNT"]),
        "builds": ref(block(upload["build_config"])["service_account"]),
    }
    accounts = {unit: expr.split(".")[1] for unit, expr in identities.items()}
    assert len(set(accounts.values())) == len(accounts), accounts
    assert set(accounts.values()) == set(module.resources["google_service_account"])
    storage_trigger = block(upload["event_trigger"])
    assert ref(storage_trigger["service_account_email"]) == "google_service_account.eventarc.email"


def roles_of(member: str, resource_ref: str, kind: str, key: str) -> set[str]:
    return {
        body["role"]
        for body in load().resources.get(kind, {}).values()
        if ref(body["member"]) == member and ref(body[key]) == resource_ref
    }


def test_nothing_droptune_runs_can_write_the_uploads_bucket():
    uploads = "google_storage_bucket.uploads.name"
    for name, body in load().resources["google_storage_bucket_iam_member"].items():
        if ref(body["bucket"]) == uploads:
            assert body["role"] == "roles/storage.objectViewer", name
    assert roles_of(
        "google_service_account.upload.member",
        uploads,
        "google_storage_bucket_iam_member",
        "bucket",
    ) == {"roles/storage.objectViewer"}


@pytest.mark.parametrize("unit", ["upload", "evaluation", "workflow", "trainer"])
def test_units_that_write_run_folders_get_object_user_on_the_runs_bucket_only(unit):
    assert roles_of(
        f"google_service_account.{unit}.member",
        "google_storage_bucket.runs.name",
        "google_storage_bucket_iam_member",
        "bucket",
    ) == {"roles/storage.objectUser"}


def test_upload_function_publishes_only_to_the_run_topic():
    publishers = [
        body
        for body in load().resources["google_pubsub_topic_iam_member"].values()
        if ref(body["member"]) == "google_service_account.upload.member"
    ]
    assert [(ref(b["topic"]), b["role"]) for b in publishers] == [
        ("google_pubsub_topic.runs.name", "roles/pubsub.publisher")
    ]


def test_the_vertex_ai_agent_reads_the_runs_bucket_and_pulls_from_the_registry():
    module = load()
    reads = module.resource("google_storage_bucket_iam_member.vertex_agent_reads_runs")
    assert ref(reads["member"]) == "local.vertex_agent"
    assert ref(reads["bucket"]) == "google_storage_bucket.runs.name"
    assert reads["role"] == "roles/storage.objectViewer"
    pulls = module.resource("google_artifact_registry_repository_iam_member.vertex_agent_pulls")
    assert ref(pulls["member"]) == "local.vertex_agent"
    assert ref(pulls["repository"]) == "google_artifact_registry_repository.images.name"
    assert pulls["role"] == "roles/artifactregistry.reader"
    # The agent exists before it is granted anything (a fresh project has none). No grant goes
    # to an agent Google creates only on first use (the Custom Code Service Agent): on a fresh
    # project such a grant fails because the account does not exist yet.
    identity = module.resource("google_project_service_identity.aiplatform")
    assert identity["service"] == "aiplatform.googleapis.com"
    assert "google_project_service_identity.aiplatform.email" in module.locals["vertex_agent"]
    members = " ".join(str(body["member"]) for _, body in grants())
    assert "gcp-sa-aiplatform-cc" not in members + str(module.locals)


def test_the_gemini_evaluation_may_only_read_tuning_jobs_and_ask_models():
    role = load().resource("google_project_iam_custom_role.gemini_evaluator")
    assert sorted(role["permissions"]) == [
        "aiplatform.endpoints.predict",
        "aiplatform.tuningJobs.get",
    ]
    grant = load().resource("google_project_iam_member.evaluation_vertex_predict")
    assert ref(grant["member"]) == "google_service_account.evaluation.member"


def test_cloud_storage_agent_can_publish_the_bucket_events():
    grant = load().resource("google_project_iam_member.storage_agent_publishes_events")
    assert grant["role"] == "roles/pubsub.publisher"
    assert ref(grant["member"]) == "local.storage_agent"
    assert "google_storage_project_service_account" in load().locals["storage_agent"]


def test_event_delivery_may_invoke_the_upload_function_and_start_the_workflow():
    module = load()
    invoke = module.resource("google_cloud_run_v2_service_iam_member.eventarc_invokes_upload")
    assert invoke["name"] == "${google_cloudfunctions2_function.upload.name}"
    assert invoke["role"] == "roles/run.invoker"
    assert ref(invoke["member"]) == "google_service_account.eventarc.member"
    starts = module.resource("google_project_iam_member.eventarc_workflow_invoker")
    assert ref(starts["member"]) == "google_service_account.eventarc.member"


# A Vertex AI REST method -> the permission its IAM table names for it (deployModel and
# undeployModel are endpoints.deploy and endpoints.undeploy).
PERMISSION_OF = {"deployModel": "deploy", "undeployModel": "undeploy"}
# The connectors poll the long-running operations these return with the resource's get (the
# operation is named under it: models/M/operations/O, endpoints/E/operations/O), whether or not
# the workflow ever calls that get itself.
POLLED_WITH = {
    "models.upload": "models.get",
    "endpoints.create": "endpoints.get",
    "endpoints.deployModel": "endpoints.get",
    "endpoints.undeployModel": "endpoints.get",
}
# Names that read as permissions and are none (Vertex AI's IAM permission reference): a custom
# role that lists one is refused, and the first apply stops there.
NOT_PERMISSIONS = {
    "aiplatform.models.deploy",
    "aiplatform.models.undeploy",
    "aiplatform.operations.get",
}


def test_the_workflow_role_holds_every_vertex_ai_method_the_workflow_calls():
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "workflows" / "pipeline.workflows.yaml").read_text()
    called = set(re.findall(r"googleapis\.aiplatform\.v1\.projects\.locations\.(\w+)\.(\w+)", text))
    assert ("customJobs", "create") in called and ("endpoints", "deployModel") in called
    if '"/tuningJobs"' in text:  # the Gemini backend's REST calls (http.post/get/cancel)
        called |= {("tuningJobs", "create"), ("tuningJobs", "get"), ("tuningJobs", "cancel")}
    needed = set()
    for resource, method in called:
        needed.add(f"aiplatform.{resource}.{PERMISSION_OF.get(method, method)}")
        if polled := POLLED_WITH.get(f"{resource}.{method}"):
            needed.add(f"aiplatform.{polled}")
    role = load().resources["google_project_iam_custom_role"]["workflow_vertex"]
    granted = set(re.findall(r"aiplatform\.\w+\.\w+", role["permissions"]))
    assert needed <= granted, f"missing from the workflow's role: {sorted(needed - granted)}"
    assert granted - needed <= {"aiplatform.tensorboards.get"}, sorted(granted - needed)
    assert not granted & NOT_PERMISSIONS, sorted(granted & NOT_PERMISSIONS)


def test_each_workflow_permission_names_the_page_it_comes_from():
    """iam.tf says, permission by permission, which Google page asks for it."""
    import re

    text = (TERRAFORM / "iam.tf").read_text()
    role = text[text.index('resource "google_project_iam_custom_role" "workflow_vertex"') :]
    role = role[: role.index("\n}\n")]
    for line in role.splitlines():
        if re.search(r'"aiplatform\.\w+\.\w+"', line):
            assert "#" in line, f"no source named for {line.strip()}"


@pytest.mark.parametrize("identity", ["aiplatform", "eventarc", "pubsub"])
def test_every_agent_created_on_request_gets_its_service_agent_role(identity):
    """An agent that google_project_service_identity creates gets no role by itself (Google's
    'Create and grant roles to service agents'): Eventarc then refuses the triggers."""
    module = load()
    email = f"google_project_service_identity.{identity}.email"
    members = {
        name: body
        for name, body in module.resources["google_project_iam_member"].items()
        if body["role"] == f"roles/{identity}.serviceAgent"
    }
    assert len(members) == 1, f"roles/{identity}.serviceAgent is granted {len(members)} times"
    ((name, body),) = members.items()
    member = body["member"]
    if ref(member) and ref(member).startswith("local."):
        member = module.locals[ref(member).removeprefix("local.")]
    assert email in member, f"{name} grants the role to {member}, not to {email}"
    waits_for = {
        str(d).strip("${}") for d in module.resource("time_sleep.iam_propagation")["depends_on"]
    }
    assert f"google_project_iam_member.{name}" in waits_for, f"the wait does not wait for {name}"


def test_the_propagation_wait_is_the_typical_two_minutes_and_everything_waits_for_it():
    """IAM: 'typically 2 minutes' (cloud.google.com/iam/docs/access-change-propagation)."""
    module = load()
    wait = module.resource("time_sleep.iam_propagation")
    assert wait["create_duration"] == "120s"
    waiting = [
        address
        for address, body in module.each()
        if any("time_sleep.iam_propagation" in str(d) for d in body.get("depends_on", []))
    ]
    for needs_grants in (
        "google_cloudfunctions2_function.upload",
        "google_eventarc_trigger.workflow",
        "google_workflows_workflow.pipeline",
    ):
        assert needs_grants in waiting, f"{needs_grants} does not wait for the grants"
    everything = {
        f"google_project_iam_member.{n}" for n in module.resources["google_project_iam_member"]
    }
    waited = {str(d).strip("${}") for d in wait["depends_on"]}
    assert everything <= waited, f"grants the wait does not wait for: {everything - waited}"
