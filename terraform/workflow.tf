# The pipeline workflow: workflows/pipeline.workflows.yaml, unchanged (its header lists the
# environment it reads). One execution per run message, started by the Eventarc trigger in
# pubsub.tf, running as the workflow's own service account.

locals {
  workflow_env = {
    DROPTUNE_RUNS_BUCKET         = google_storage_bucket.runs.name
    DROPTUNE_REGION              = var.region
    DROPTUNE_TRAINER_IMAGE       = local.trainer_image
    DROPTUNE_JOB_SERVICE_ACCOUNT = google_service_account.trainer.email
    DROPTUNE_ENDPOINT_ID         = coalesce(var.endpoint_id, var.name_prefix)
    DROPTUNE_LABELS              = jsonencode(local.common_labels)
    DROPTUNE_POLL_SECONDS        = tostring(var.poll_seconds)
    DROPTUNE_POLL_MAX_SECONDS    = tostring(var.poll_max_seconds)
    DROPTUNE_EVALUATION_URL      = google_cloudfunctions2_function.evaluate.service_config[0].uri
  }
  workflow_env_optional = {
    DROPTUNE_SERVING_IMAGE = var.serving_image
    # Training jobs can log to this TensorBoard instance when it exists.
    DROPTUNE_TENSORBOARD = var.enable_tensorboard ? google_vertex_ai_tensorboard.training[0].id : ""
  }
}

resource "google_workflows_workflow" "pipeline" {
  project         = var.project_id
  name            = local.workflow_name
  region          = var.region
  description     = "droptune: trains, evaluates and deploys one run per message (workflows/pipeline.workflows.yaml)."
  service_account = google_service_account.workflow.id
  call_log_level  = var.workflow_call_log_level
  labels          = local.common_labels
  source_contents = file(local.workflow_file)
  # The runs and models live in the buckets; the workflow itself is rebuilt by apply.
  deletion_protection = false

  # Keys the workflow reads with sys.get_env; optional ones are left out when empty, so that
  # the workflow's own default() applies.
  user_env_vars = merge(
    local.workflow_env,
    { for key, value in local.workflow_env_optional : key => value if value != "" },
  )

  depends_on = [
    google_project_service.enabled,
    # A new trainer image is pushed before the workflow starts pointing at it.
    terraform_data.trainer_image,
    time_sleep.iam_propagation,
  ]
}
