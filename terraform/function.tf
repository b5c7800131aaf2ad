# The two Cloud Run functions, both built from functions/ plus the droptune core
# (`make function-source`), each with its own service account.
#
#   upload    on_upload: finalize events of the uploads bucket -> a QUEUED or REJECTED run.
#   evaluate  evaluate: HTTP, called by the workflow with an OIDC token to score a Gemini run
#             (baseline vs tuned). Private: only the workflow's service account may invoke it.

resource "google_cloudfunctions2_function" "upload" {
  project     = var.project_id
  name        = local.upload_function_name
  location    = var.region
  description = "droptune: validates each upload and starts its run."
  labels      = local.common_labels

  build_config {
    runtime           = var.function_runtime
    entry_point       = "on_upload"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.images.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.upload.email
    available_memory      = var.upload_function.memory
    available_cpu         = var.upload_function.cpu
    timeout_seconds       = var.upload_function.timeout_seconds
    max_instance_count    = var.upload_function.max_instances
    min_instance_count    = 0
    # One upload per instance: the memory is sized for one file.
    max_instance_request_concurrency = 1
    # Only Eventarc calls it.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true

    environment_variables = {
      DROPTUNE_UPLOADS_BUCKET     = google_storage_bucket.uploads.name
      DROPTUNE_RUNS_BUCKET        = google_storage_bucket.runs.name
      DROPTUNE_TOPIC              = google_pubsub_topic.runs.id
      DROPTUNE_DEFAULT_BACKEND    = var.default_backend
      DROPTUNE_DEFAULT_BASE_MODEL = var.default_base_model
      DROPTUNE_MAX_UPLOAD_BYTES   = tostring(var.max_upload_bytes)
      # A new instance loads the default model's tokenizer before it takes an upload.
      DROPTUNE_PRELOAD_TOKENIZER = "true"
      GOOGLE_CLOUD_PROJECT       = var.project_id
      GOOGLE_CLOUD_LOCATION      = var.region
    }
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.storage.object.v1.finalized"
    service_account_email = google_service_account.eventarc.email
    # A failed attempt is redelivered; the function itself ends a run FAILED after
    # DROPTUNE_MAX_ATTEMPTS attempts, so a broken upload does not retry for a day.
    retry_policy = "RETRY_POLICY_RETRY"

    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.uploads.name
    }
  }

  depends_on = [
    google_project_service.enabled,
    time_sleep.iam_propagation,
  ]
}

resource "google_cloudfunctions2_function" "evaluate" {
  project     = var.project_id
  name        = local.evaluation_function_name
  location    = var.region
  description = "droptune: scores a tuned Gemini model against its base model on the run's test split."
  labels      = local.common_labels

  build_config {
    runtime           = var.function_runtime
    entry_point       = "evaluate"
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.images.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.evaluation.email
    available_memory                 = var.evaluation_function.memory
    available_cpu                    = var.evaluation_function.cpu
    timeout_seconds                  = var.evaluation_function.timeout_seconds
    max_instance_count               = var.evaluation_function.max_instances
    min_instance_count               = 0
    max_instance_request_concurrency = 1
    # Internal traffic only: Cloud Workflows in the same project counts as internal when it
    # calls the run.app URL (service_config.uri, what the workflow is given), and every request
    # also needs an identity token of a principal with run.invoker (only the workflow's account).
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true

    environment_variables = {
      DROPTUNE_RUNS_BUCKET      = google_storage_bucket.runs.name
      GOOGLE_CLOUD_PROJECT      = var.project_id
      GOOGLE_CLOUD_LOCATION     = var.region
      GOOGLE_GENAI_USE_VERTEXAI = "true"
    }
  }

  depends_on = [
    google_project_service.enabled,
    time_sleep.iam_propagation,
  ]
}
