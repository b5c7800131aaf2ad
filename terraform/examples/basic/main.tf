# A runnable root for droptune: copy terraform.tfvars.example to terraform.tfvars, set your
# project, then (after `make function-source` at the repository root):
#   terraform init && terraform apply
# docs/deploy.md walks through it, first upload and teardown included.

terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.11" # deletion_protection on google_workflows_workflow
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.11" # deletion_protection on google_workflows_workflow
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}

module "droptune" {
  source = "../.."

  project_id            = var.project_id
  region                = var.region
  name_prefix           = var.name_prefix
  default_backend       = var.default_backend
  default_base_model    = var.default_base_model
  enable_tensorboard    = var.enable_tensorboard
  alert_email           = var.alert_email
  notification_channels = var.notification_channels
  kms_key_name          = var.kms_key_name
  base_model_bucket     = var.base_model_bucket
  force_destroy         = var.force_destroy
  # Every other input of ../../variables.tf can be set here too, e.g. for uploads up to
  # 4 GiB: max_upload_bytes = 4294967296 and upload_function = { memory = "6Gi" } (memory
  # must exceed max_upload_bytes by about 1 GiB).
}
