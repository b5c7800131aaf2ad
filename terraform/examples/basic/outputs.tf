output "uploads_bucket" {
  description = "The drop zone: a dataset uploaded here starts a run."
  value       = module.droptune.uploads_bucket
}

output "runs_bucket" {
  description = "Where every run's folder (runs/<run_id>/) is written."
  value       = module.droptune.runs_bucket
}

output "upload_command" {
  description = "The command that starts a run: replace FILE with your dataset."
  value       = module.droptune.upload_command
}

output "status_command" {
  description = "The command that prints a run's state: replace RUN_ID."
  value       = module.droptune.status_command
}

output "workflow_url" {
  description = "The pipeline workflow's executions in the Cloud console."
  value       = module.droptune.workflow_url
}

output "dashboard_url" {
  description = "The droptune monitoring dashboard in the Cloud console."
  value       = module.droptune.dashboard_url
}
