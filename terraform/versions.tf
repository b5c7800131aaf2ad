# Terraform and provider versions. google-beta is used only for google_project_service_identity
# (it creates the service agents before anything is granted to them).
# tests/terraform/test_schema.py checks every block against the providers' own schemas:
# google and google-beta 6.50.0, time 0.13.1, archive 2.7.1 (the cdktf packages in the dev
# extra); terraform/ also passed against google 6.11.2's schema, the constraint's lower end.
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
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
    time = {
      source  = "hashicorp/time"
      version = "~> 0.12"
    }
  }
}
