# One service account per unit, each granted only what that unit does, on the narrowest
# resource that can carry the grant: a bucket, a topic, a repository, a service account, a
# Cloud Run service. Project-level grants are left only where Google offers nothing narrower,
# and each says why. No primitive roles (owner/editor/viewer), no project-wide storage admin.
#
#   unit        account                 does
#   upload      <prefix>-upload         reads uploads; writes run folders; publishes run messages
#   evaluation  <prefix>-evaluation     calls Gemini; reads and writes run folders
#   workflow    <prefix>-workflow       drives Vertex AI; writes status.json; launches jobs as trainer
#   eventarc    <prefix>-eventarc       delivers events to the upload function and the workflow
#   trainer     <prefix>-trainer        the training job: reads data, writes model and evaluation
#   build       <prefix>-build          Cloud Build: builds the functions and the trainer image

resource "google_service_account" "upload" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-upload"
  display_name = "droptune upload function"
  description  = "Runs the upload function: reads the uploads bucket, writes run folders, publishes run messages."
}

resource "google_service_account" "evaluation" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-evaluation"
  display_name = "droptune evaluation function"
  description  = "Runs the evaluation function: calls Gemini models, reads and writes run folders."
}

resource "google_service_account" "workflow" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-workflow"
  display_name = "droptune pipeline workflow"
  description  = "Runs the pipeline workflow: Vertex AI jobs, models and endpoints; status.json."
}

resource "google_service_account" "eventarc" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-eventarc"
  display_name = "droptune event delivery"
  description  = "Identity of the Eventarc triggers: uploads -> upload function, run topic -> workflow."
}

resource "google_service_account" "trainer" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-trainer"
  display_name = "droptune training jobs"
  description  = "Identity of the Vertex AI custom jobs that train and evaluate a run."
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "droptune builds"
  description  = "Cloud Build identity for the functions' images and the trainer image."
}

# --- upload function -----------------------------------------------------------------------

# Read only: droptune never writes the drop zone.
resource "google_storage_bucket_iam_member" "upload_reads_uploads" {
  bucket = google_storage_bucket.uploads.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.upload.member
}

# Creates run.json and the run folder, and rewrites status.json with generation preconditions.
resource "google_storage_bucket_iam_member" "upload_writes_runs" {
  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectUser"
  member = google_service_account.upload.member
}

resource "google_pubsub_topic_iam_member" "upload_publishes_runs" {
  project = var.project_id
  topic   = google_pubsub_topic.runs.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.upload.member
}

# --- evaluation function -------------------------------------------------------------------

# The evaluation reads the tuning job and calls generateContent on the base Gemini model and on
# the tuned model's endpoint: those two permissions, project-wide (publisher models have no
# narrower resource to grant on), instead of aiplatform.user's create/deploy/delete.
resource "google_project_iam_custom_role" "gemini_evaluator" {
  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_gemini_evaluator"
  title       = "droptune Gemini evaluator"
  description = "Reads Gemini tuning jobs and asks base and tuned models for answers."
  permissions = ["aiplatform.endpoints.predict", "aiplatform.tuningJobs.get"]
}

resource "google_project_iam_member" "evaluation_vertex_predict" {
  project = var.project_id
  role    = google_project_iam_custom_role.gemini_evaluator.id
  member  = google_service_account.evaluation.member
}

resource "google_storage_bucket_iam_member" "evaluation_writes_runs" {
  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectUser"
  member = google_service_account.evaluation.member
}

# --- workflow ------------------------------------------------------------------------------

# What workflows/pipeline.workflows.yaml calls, method by method, project-wide because the
# workflow creates the resources itself: no narrower resource to grant on, and none of
# aiplatform.user's deletes, datasets or notebooks. Sources, by the tag after each permission:
#   [rest]  the method's Vertex AI REST reference page, section "IAM Permissions"
#           (cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.<resource>/<method>)
#   [rpc]   the Vertex AI RPC reference (google.cloud.aiplatform.v1), GenAiTuningService and
#           PredictionService
#   [lro]   Vertex AI IAM permissions (cloud.google.com/vertex-ai/docs/general/iam-permissions):
#           an operation that "starts a long-running operation" needs the resource's get to
#           GET or WAIT on it. The Workflows connectors for models.upload, endpoints.create,
#           deployModel and undeployModel wait on those operations, polling them by their
#           names, models/M/operations/O and endpoints/E/operations/O
#           (cloud.google.com/workflows/docs/reference/googleapis/aiplatform/v1/...).
# Every name checked against cloud.google.com/iam/docs/roles-permissions/aiplatform: there is
# no aiplatform.models.deploy, models.undeploy or operations.get, and a custom role listing a
# permission that does not exist is refused.
resource "google_project_iam_custom_role" "workflow_vertex" {
  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_workflow_vertex"
  title       = "droptune workflow"
  description = "Runs training and tuning jobs, uploads models and deploys them on endpoints."
  permissions = concat(
    [
      "aiplatform.customJobs.cancel",  # [rest] customJobs.cancel
      "aiplatform.customJobs.create",  # [rest] customJobs.create
      "aiplatform.customJobs.get",     # [rest] customJobs.get (the workflow's own polling)
      "aiplatform.endpoints.create",   # [rest] endpoints.create
      "aiplatform.endpoints.deploy",   # [rest] endpoints.deployModel (nothing on the model)
      "aiplatform.endpoints.get",      # [rest] endpoints.get; [lro] create, deploy, undeploy
      "aiplatform.endpoints.predict",  # [rpc] PredictionService.Predict (the smoke request)
      "aiplatform.endpoints.undeploy", # [rest] endpoints.undeployModel
      "aiplatform.models.get",         # [lro] models.upload (the workflow never gets a model)
      "aiplatform.models.upload",      # [rest] models.upload
      "aiplatform.tuningJobs.cancel",  # [rest] tuningJobs.cancel
      "aiplatform.tuningJobs.create",  # [rpc] GenAiTuningService.CreateTuningJob
      "aiplatform.tuningJobs.get",     # [rpc] GenAiTuningService.GetTuningJob
    ],
    # A job created with `tensorboard` names the instance it writes to. No Google page found
    # says customJobs.create needs this when it does; it is granted only with the instance.
    var.enable_tensorboard ? ["aiplatform.tensorboards.get"] : [], # see the comment above
  )
}

resource "google_project_iam_member" "workflow_vertex" {
  project = var.project_id
  role    = google_project_iam_custom_role.workflow_vertex.id
  member  = google_service_account.workflow.member
}

# status.json and endpoint.json; reads run.json and evaluation/gate.json.
resource "google_storage_bucket_iam_member" "workflow_writes_runs" {
  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectUser"
  member = google_service_account.workflow.member
}

# Launch custom jobs that run as the trainer account, and only as that account.
resource "google_service_account_iam_member" "workflow_acts_as_trainer" {
  service_account_id = google_service_account.trainer.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.workflow.member
}

# Call the evaluation function (an OIDC token of this account).
resource "google_cloud_run_v2_service_iam_member" "workflow_invokes_evaluation" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.evaluate.name
  role     = "roles/run.invoker"
  member   = google_service_account.workflow.member
}

# sys.log: log writing is granted per project only.
resource "google_project_iam_member" "workflow_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.workflow.member
}

# --- eventarc ------------------------------------------------------------------------------

# Receive the Cloud Storage events (a project-level role: events are not resources).
resource "google_project_iam_member" "eventarc_event_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.eventarc.member
}

resource "google_cloud_run_v2_service_iam_member" "eventarc_invokes_upload" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.upload.name
  role     = "roles/run.invoker"
  member   = google_service_account.eventarc.member
}

# Start workflow executions: Workflows offers this role per project only.
resource "google_project_iam_member" "eventarc_workflow_invoker" {
  project = var.project_id
  role    = "roles/workflows.invoker"
  member  = google_service_account.eventarc.member
}

# Pub/Sub signs the push requests of the triggers with this account's identity tokens.
resource "google_service_account_iam_member" "pubsub_agent_tokens_for_eventarc" {
  service_account_id = google_service_account.eventarc.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# --- trainer (Vertex AI custom jobs) -------------------------------------------------------

# The run folder: data in; checkpoints, model/, training/ and evaluation/ out.
resource "google_storage_bucket_iam_member" "trainer_writes_runs" {
  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectUser"
  member = google_service_account.trainer.member
}

resource "google_storage_bucket_iam_member" "trainer_reads_base_models" {
  count = var.base_model_bucket == null ? 0 : 1

  bucket = var.base_model_bucket
  role   = "roles/storage.objectViewer"
  member = google_service_account.trainer.member
}

resource "google_project_iam_member" "trainer_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.trainer.member
}

# Writing TensorBoard experiments needs aiplatform.tensorboard* permissions. Google's setup
# page for TensorBoard in custom training asks for aiplatform.user on the job's account and
# does not say which calls its uploader makes, so no narrower role is offered in its place;
# granted only when the TensorBoard instance exists (enable_tensorboard).
resource "google_project_iam_member" "trainer_tensorboard" {
  count = var.enable_tensorboard ? 1 : 0

  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = google_service_account.trainer.member
}

# --- build ---------------------------------------------------------------------------------

resource "google_artifact_registry_repository_iam_member" "build_writer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

# The staged sources (function archive, trainer build context).
resource "google_storage_bucket_iam_member" "build_sources_reader" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}

# Cloud Run functions copies each function's source into its own bucket
# (gcf-v2-sources-<project number>-<region>) before the build reads it; that bucket is created
# by the service, so the grant is project-level with a condition that limits it to it.
resource "google_project_iam_member" "build_reads_function_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.build.member

  condition {
    title       = "gcf-v2-sources-only"
    description = "Only the buckets Cloud Run functions stages function sources in."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-\")"
  }
}

resource "google_project_iam_member" "build_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}

# --- service agents ------------------------------------------------------------------------

# The agents apis.tf creates on request get no role of their own (Google grants it only to an
# agent it creates on first use; https://cloud.google.com/iam/docs/create-service-agents):
# each gets its service agent role here, as Google would have granted it.
resource "google_project_iam_member" "vertex_agent_role" {
  #checkov:skip=CKV_GCP_49:Google's own service agent role, granted only to the Vertex AI service agent as Google grants it to an agent created on first use.
  project = var.project_id
  role    = "roles/aiplatform.serviceAgent"
  member  = local.vertex_agent
}

resource "google_project_iam_member" "eventarc_agent_role" {
  #checkov:skip=CKV_GCP_49:Google's own service agent role, granted only to the Eventarc service agent as Google grants it to an agent created on first use.
  project = var.project_id
  role    = "roles/eventarc.serviceAgent"
  member  = local.eventarc_agent
}

resource "google_project_iam_member" "pubsub_agent_role" {
  #checkov:skip=CKV_GCP_49:Google's own service agent role, granted only to the Pub/Sub service agent as Google grants it to an agent created on first use.
  project = var.project_id
  role    = "roles/pubsub.serviceAgent"
  member  = local.pubsub_agent
}

# Gemini tuning runs as the Vertex AI Service Agent and reads data/gemini/*.jsonl; model
# upload and endpoints read model/ and pull the serving image through it. Google's own role
# for the agent (Vertex AI Service Agent) may already cover both; these grants say what the
# pipeline needs of it where that role is trimmed. The Custom Code Service Agent, which pulls
# the trainer image, is not granted anything here: Google creates it with the first custom job
# (a grant to it fails on a fresh project), with a role that already reads this project's
# registry; the training container itself runs as the trainer's account.
resource "google_storage_bucket_iam_member" "vertex_agent_reads_runs" {
  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectViewer"
  member = local.vertex_agent
}

resource "google_artifact_registry_repository_iam_member" "vertex_agent_pulls" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = local.vertex_agent
}

# Eventarc's Cloud Storage triggers carry the bucket's events over a Pub/Sub topic that
# Eventarc creates itself, so the Cloud Storage agent publishes project-wide.
resource "google_project_iam_member" "storage_agent_publishes_events" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = local.storage_agent
}

# Dead-lettering: the Pub/Sub agent moves undeliverable run messages to the dead-letter topic
# and acknowledges them on the workflow trigger's subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "workflow_delivery_subscriber" {
  project      = var.project_id
  subscription = google_eventarc_trigger.workflow.transport[0].pubsub[0].subscription
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# CMEK (optional): the Cloud Storage agent encrypts and decrypts the buckets' objects.
resource "google_kms_crypto_key_iam_member" "storage_agent" {
  count = var.kms_key_name == null ? 0 : 1

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = local.storage_agent
}

# The buckets are created with the key as their default, which fails until the grant above
# is honoured (IAM is eventually consistent): they wait for it.
resource "time_sleep" "kms_propagation" {
  count = var.kms_key_name == null ? 0 : 1

  create_duration = "60s"
  triggers        = { grant = google_kms_crypto_key_iam_member.storage_agent[0].etag }
}

# IAM is eventually consistent: a grant is "typically" honoured within 2 minutes, "potentially
# 7 minutes or longer" (https://cloud.google.com/iam/docs/access-change-propagation). The
# builds, the functions, the triggers and the workflow wait the typical 2 minutes for every
# grant above, the service agents' roles included, so the first apply works end to end in the
# usual case; in a slower one, the resource that fails is created by running apply again.
resource "time_sleep" "iam_propagation" {
  create_duration = "120s"

  triggers = {
    upload     = google_service_account.upload.email
    evaluation = google_service_account.evaluation.email
    workflow   = google_service_account.workflow.email
    eventarc   = google_service_account.eventarc.email
    trainer    = google_service_account.trainer.email
    build      = google_service_account.build.email
  }

  depends_on = [
    google_project_service_identity.aiplatform,
    google_project_service_identity.eventarc,
    google_project_service_identity.pubsub,
    google_project_iam_member.vertex_agent_role,
    google_project_iam_member.eventarc_agent_role,
    google_project_iam_member.pubsub_agent_role,
    google_storage_bucket_iam_member.upload_reads_uploads,
    google_storage_bucket_iam_member.upload_writes_runs,
    google_pubsub_topic_iam_member.upload_publishes_runs,
    google_project_iam_member.evaluation_vertex_predict,
    google_storage_bucket_iam_member.evaluation_writes_runs,
    google_project_iam_member.workflow_vertex,
    google_storage_bucket_iam_member.workflow_writes_runs,
    google_service_account_iam_member.workflow_acts_as_trainer,
    google_project_iam_member.workflow_log_writer,
    google_project_iam_member.eventarc_event_receiver,
    google_project_iam_member.eventarc_workflow_invoker,
    google_service_account_iam_member.pubsub_agent_tokens_for_eventarc,
    google_storage_bucket_iam_member.trainer_writes_runs,
    google_storage_bucket_iam_member.trainer_reads_base_models,
    google_project_iam_member.trainer_log_writer,
    google_project_iam_member.trainer_tensorboard,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_sources_reader,
    google_project_iam_member.build_reads_function_sources,
    google_project_iam_member.build_log_writer,
    google_storage_bucket_iam_member.vertex_agent_reads_runs,
    google_artifact_registry_repository_iam_member.vertex_agent_pulls,
    google_project_iam_member.storage_agent_publishes_events,
    google_pubsub_topic_iam_member.dead_letter_publisher,
  ]
}
