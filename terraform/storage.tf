# Buckets. Two for the data, so that droptune's own writes never re-trigger the upload function:
#   uploads  the drop zone; its finalize events start the upload function. Read-only to droptune.
#   runs     everything droptune writes: runs/<run_id>/ per run.
# and one for deployment sources (the functions' source archive, Cloud Build's staged source).
#
# All three: uniform bucket-level access (IAM only, no ACLs), public access prevention
# enforced, versioning on, optional CMEK, and lifecycle rules that keep storage costs flat.

resource "google_storage_bucket" "uploads" {
  #checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs (Data Access logs for Cloud Storage); usage logs would need yet another bucket.
  project                     = var.project_id
  name                        = local.uploads_bucket
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = local.common_labels

  # An overwritten dataset stays readable at the generation its run was started from.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.enabled, time_sleep.kms_propagation]
}

resource "google_storage_bucket" "runs" {
  #checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs (Data Access logs for Cloud Storage); usage logs would need yet another bucket.
  project                     = var.project_id
  name                        = local.runs_bucket
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = local.common_labels

  versioning {
    enabled = true
  }

  # Training checkpoints (runs/<id>/.../step-*/state.pt) only matter while a job may resume.
  lifecycle_rule {
    condition {
      age            = var.checkpoint_retention_days
      matches_suffix = ["/state.pt"]
      with_state     = "LIVE"
    }
    action {
      type = "Delete"
    }
  }

  # status.json is rewritten at every state change: drop the old versions after a while.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.enabled, time_sleep.kms_propagation]
}

resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Holds only deployment sources; access is recorded by Cloud Audit Logs.
  project                     = var.project_id
  name                        = local.sources_bucket
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Only rebuildable deployment sources live here.
  force_destroy = true
  labels        = local.common_labels

  versioning {
    enabled = true
  }

  # Staged Cloud Build sources and replaced function archives are not needed after a deploy.
  lifecycle_rule {
    condition {
      age            = 30
      matches_prefix = ["cloudbuild/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.enabled, time_sleep.kms_propagation]
}

# The functions' source: `make function-source` puts main.py, the droptune wheel and a
# requirements.txt in build/function/. The object is named by the archive's hash, so a new
# build redeploys both functions and an unchanged one deploys nothing.
data "archive_file" "function_source" {
  type        = "zip"
  source_dir  = local.function_source_dir
  output_path = "${local.repo_root}/build/function-source.zip"

  lifecycle {
    precondition {
      condition     = fileexists("${local.function_source_dir}/main.py") && fileexists("${local.function_source_dir}/requirements.txt")
      error_message = "No function source in ${local.function_source_dir}: run `make function-source` at the repository root first."
    }
  }
}

resource "google_storage_bucket_object" "function_source" {
  name   = "functions/source-${data.archive_file.function_source.output_md5}.zip"
  bucket = google_storage_bucket.sources.name
  source = data.archive_file.function_source.output_path
}
