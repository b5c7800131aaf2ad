output "uploads_bucket" {
  description = "The drop zone: a dataset uploaded here starts a run."
  value       = google_storage_bucket.uploads.name
}

output "runs_bucket" {
  description = "Where every run's folder (runs/<run_id>/) is written."
  value       = google_storage_bucket.runs.name
}

output "upload_command" {
  description = "The command that starts a run: replace FILE with your dataset (.jsonl, .json, .csv, .tsv)."
  value       = "gcloud storage cp FILE gs://${google_storage_bucket.uploads.name}/"
}

output "status_command" {
  description = "The command that prints a run's state: replace RUN_ID with the id the upload function logged."
  value       = "gcloud storage cat gs://${google_storage_bucket.runs.name}/runs/RUN_ID/status.json"
}

output "workflow_url" {
  description = "The pipeline workflow's executions in the Cloud console."
  value       = "https://console.cloud.google.com/workflows/workflow/${var.region}/${google_workflows_workflow.pipeline.name}/executions?project=${var.project_id}"
}

output "dashboard_url" {
  description = "The droptune monitoring dashboard in the Cloud console."
  value       = "https://console.cloud.google.com/monitoring/dashboards/builder/${element(split("/", google_monitoring_dashboard.droptune.id), 3)}?project=${var.project_id}"
}

output "topic" {
  description = "The run topic (DROPTUNE_TOPIC) the upload function publishes to."
  value       = google_pubsub_topic.runs.id
}

output "trainer_image" {
  description = "The trainer image the workflow's training jobs run."
  value       = local.trainer_image
}

output "evaluation_url" {
  description = "The evaluation function's URL (DROPTUNE_EVALUATION_URL); only the workflow's service account may call it."
  value       = google_cloudfunctions2_function.evaluate.service_config[0].uri
}

output "service_accounts" {
  description = "The service account of each unit."
  value = {
    upload     = google_service_account.upload.email
    evaluation = google_service_account.evaluation.email
    workflow   = google_service_account.workflow.email
    eventarc   = google_service_account.eventarc.email
    trainer    = google_service_account.trainer.email
    build      = google_service_account.build.email
  }
}

output "tensorboard" {
  description = "The Vertex AI TensorBoard instance, when enable_tensorboard is true."
  value       = var.enable_tensorboard ? google_vertex_ai_tensorboard.training[0].id : null
}
