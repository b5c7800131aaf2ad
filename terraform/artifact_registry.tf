# The image registry (trainer image, and the functions' images built by Cloud Run functions)
# and the trainer image build.
#
# The trainer image is built by Cloud Build from trainer/Dockerfile with the repository root as
# context: no Docker engine is needed where Terraform runs, only gcloud (authenticated as the
# user running apply). The build runs during apply whenever what goes into the image changed
# (local.trainer_tag hashes those files), as the build service account, with its source staged
# in the sources bucket. Set trainer_image to use an image built elsewhere instead.

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Images hold code and public base layers, no data; CMEK would add a key to manage for nothing protected.
  project       = var.project_id
  location      = var.region
  repository_id = local.repository_id
  format        = "DOCKER"
  description   = "droptune images: the trainer and the Cloud Run functions."
  labels        = local.common_labels

  # Keep the last few versions of each image (the one deployed among them) and nothing older
  # than 90 days: a trainer image is several GB.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 5
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "7776000s"
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "terraform_data" "trainer_image" {
  count = local.build_trainer ? 1 : 0

  triggers_replace = [local.trainer_image]

  provisioner "local-exec" {
    working_dir = local.repo_root
    command = join(" ", [
      "gcloud builds submit .",
      "--project=${var.project_id}",
      "--region=${var.region}",
      "--config=terraform/cloudbuild/trainer.yaml",
      "--ignore-file=terraform/cloudbuild/trainer.gcloudignore",
      "--substitutions=_IMAGE=${local.trainer_image}",
      "--service-account=${google_service_account.build.id}",
      "--gcs-source-staging-dir=gs://${google_storage_bucket.sources.name}/cloudbuild/source",
    ])
  }

  depends_on = [
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_sources_reader,
    google_project_iam_member.build_log_writer,
    time_sleep.iam_propagation,
  ]
}
