variable "project_id" {
  description = "Google Cloud project to deploy into (billing enabled)."
  type        = string
}

variable "region" {
  description = "Region of every droptune resource."
  type        = string
  default     = "us-central1"
}

variable "default_backend" {
  description = "Backend for uploads whose configuration names none: custom or gemini."
  type        = string
  default     = "custom"
}

variable "enable_tensorboard" {
  description = "Create a Vertex AI TensorBoard instance for training curves."
  type        = bool
  default     = false
}

variable "alert_email" {
  description = "E-mail address for the alerts on failed runs (null: none)."
  type        = string
  default     = null
}

variable "notification_channels" {
  description = "Existing Cloud Monitoring notification channel ids for the alerts."
  type        = list(string)
  default     = []
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete the buckets with everything in them."
  type        = bool
  default     = false
}

variable "name_prefix" {
  description = "Prefix of every resource name; a second deployment in the same project needs its own."
  type        = string
  default     = "droptune"
}

variable "default_base_model" {
  description = "Base model for uploads whose configuration names none. Empty: droptune's default for the backend."
  type        = string
  default     = ""
}

variable "kms_key_name" {
  description = "Optional Cloud KMS key for customer-managed encryption of the buckets (null: Google-managed keys)."
  type        = string
  default     = null
}

variable "base_model_bucket" {
  description = "Optional bucket holding base models referenced as gs:// paths (null: none)."
  type        = string
  default     = null
}
