# droptune on Google Cloud: an upload to the uploads bucket starts the upload function, which
# writes a run folder to the runs bucket and publishes a run message; Eventarc hands it to the
# pipeline workflow, which trains (Vertex AI), evaluates and deploys.
#
#   storage.tf            uploads, runs and sources buckets; the functions' source archive
#   function.tf           upload function (storage trigger) and evaluation function (HTTP)
#   pubsub.tf             run topic, dead-letter topic, Eventarc trigger -> workflow
#   workflow.tf           the pipeline workflow (workflows/pipeline.workflows.yaml)
#   artifact_registry.tf  image registry and the trainer image build (Cloud Build)
#   iam.tf                one service account per unit, each with only what it needs
#   monitoring.tf         log-based metrics, dashboard, alerts, optional TensorBoard
#   apis.tf               APIs and service agents
#
# Derived values live here.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  repo_root = abspath("${path.module}/..")

  uploads_bucket = coalesce(var.uploads_bucket_name, "${var.project_id}-${var.name_prefix}-uploads")
  runs_bucket    = coalesce(var.runs_bucket_name, "${var.project_id}-${var.name_prefix}-runs")
  sources_bucket = "${var.project_id}-${var.name_prefix}-sources"

  upload_function_name     = "${var.name_prefix}-upload"
  evaluation_function_name = "${var.name_prefix}-evaluate"
  workflow_name            = "${var.name_prefix}-pipeline"
  topic_name               = "${var.name_prefix}-runs"
  dead_letter_topic_name   = "${var.name_prefix}-runs-dead-letter"
  repository_id            = var.name_prefix

  function_source_dir = coalesce(var.function_source_dir, "${local.repo_root}/build/function")
  workflow_file       = "${local.repo_root}/workflows/pipeline.workflows.yaml"

  # The trainer image is tagged with a hash of what goes into it, so a code change builds and
  # deploys a new image and an unchanged tree builds nothing. README.md is copied into the
  # image only as package metadata, so it is left out of the hash.
  trainer_inputs = sort(concat(
    ["pyproject.toml", "trainer/Dockerfile", "trainer/Dockerfile.dockerignore"],
    [for f in fileset(local.repo_root, "droptune/**") : f if !strcontains(f, "__pycache__")],
    [for f in fileset(local.repo_root, "trainer/droptune_trainer/**") : f if !strcontains(f, "__pycache__")],
  ))
  trainer_tag = substr(sha256(join("\n", [
    for f in local.trainer_inputs : "${f} ${filesha256("${local.repo_root}/${f}")}"
  ])), 0, 16)
  registry      = "${var.region}-docker.pkg.dev/${var.project_id}/${local.repository_id}"
  build_trainer = var.trainer_image == ""
  trainer_image = local.build_trainer ? "${local.registry}/trainer:${local.trainer_tag}" : var.trainer_image

  # Service agents: Google-managed identities that act for a service inside this project.
  vertex_agent   = "serviceAccount:${google_project_service_identity.aiplatform.email}"
  eventarc_agent = "serviceAccount:${google_project_service_identity.eventarc.email}"
  pubsub_agent   = "serviceAccount:${google_project_service_identity.pubsub.email}"
  storage_agent  = "serviceAccount:${data.google_storage_project_service_account.this.email_address}"

  common_labels = merge({ app = "droptune" }, var.labels)
}
