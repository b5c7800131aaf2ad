# The APIs droptune uses, and the service agents that act for them in this project.
#
# Service agents are created lazily by Google, often only on a service's first use; granting a
# role to one that does not exist yet fails. google_project_service_identity creates them up
# front, so the grants in iam.tf work on the first apply of a fresh project. An agent created
# on request gets none of the roles Google grants on first use ("Create and grant roles to
# service agents", https://cloud.google.com/iam/docs/create-service-agents): iam.tf grants
# each its service agent role (without it Eventarc refuses the triggers with a 400 "verify
# that it has Eventarc Service Agent role", terraform-provider-google issues 14584, 25294).

locals {
  services = [
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
    "workflowexecutions.googleapis.com",
    "workflows.googleapis.com",
  ]
}

resource "google_project_service" "enabled" {
  for_each = toset(local.services)

  project = var.project_id
  service = each.value
  # Other workloads in the project may use these APIs too: never turn them off on destroy.
  disable_on_destroy = false
}

# Vertex AI: creates its primary agent, the Vertex AI Service Agent (Gemini tuning reads the
# training data, endpoints read the model), so that it can be granted before first use.
resource "google_project_service_identity" "aiplatform" {
  provider = google-beta

  project    = var.project_id
  service    = "aiplatform.googleapis.com"
  depends_on = [google_project_service.enabled]
}

# Eventarc: its agent manages the triggers' Pub/Sub transport.
resource "google_project_service_identity" "eventarc" {
  provider = google-beta

  project    = var.project_id
  service    = "eventarc.googleapis.com"
  depends_on = [google_project_service.enabled]
}

# Pub/Sub: its agent signs push deliveries and moves messages to the dead-letter topic.
resource "google_project_service_identity" "pubsub" {
  provider = google-beta

  project    = var.project_id
  service    = "pubsub.googleapis.com"
  depends_on = [google_project_service.enabled]
}

# Cloud Storage: its agent publishes the bucket's object events for Eventarc.
data "google_storage_project_service_account" "this" {
  project    = var.project_id
  depends_on = [google_project_service.enabled]
}
