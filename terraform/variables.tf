# Every input of the droptune deployment. Only project_id is required; the defaults deploy a
# working stack in us-central1 with the custom (open model) backend.

# --- where ---------------------------------------------------------------------------------

variable "project_id" {
  description = "Google Cloud project to deploy into (billing enabled)."
  type        = string
}

variable "region" {
  description = "Region of the buckets, functions, workflow, registry and Vertex AI jobs. Keep them together: cross-region reads cost egress."
  type        = string
  default     = "us-central1"
}

variable "name_prefix" {
  description = "Prefix of every resource name (service accounts, functions, topics, workflow, registry)."
  type        = string
  default     = "droptune"

  validation {
    # Service account ids are 6-30 characters; the longest suffix is "-evaluation". The prefix
    # alone names the Artifact Registry repository, which must end with a letter or digit.
    condition     = can(regex("^[a-z][a-z0-9-]{1,16}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-18 characters of [a-z0-9-], starting with a letter and ending with a letter or digit."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = {}
}

# --- buckets -------------------------------------------------------------------------------

variable "uploads_bucket_name" {
  description = "Name of the uploads bucket (the drop zone). Default: <project_id>-<name_prefix>-uploads."
  type        = string
  default     = null
}

variable "runs_bucket_name" {
  description = "Name of the runs bucket (everything droptune writes). Default: <project_id>-<name_prefix>-runs."
  type        = string
  default     = null
}

variable "kms_key_name" {
  description = "Optional Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K, in the buckets' region) for customer-managed encryption of the buckets. null: Google-managed keys."
  type        = string
  default     = null
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete buckets that still hold objects (uploads, run folders, models). Keep false unless you mean to lose them."
  type        = bool
  default     = false
}

variable "checkpoint_retention_days" {
  description = "Training checkpoints (runs/*/checkpoints/**/state.pt) are deleted this many days after they were written; they only matter while a job can still resume."
  type        = number
  default     = 14

  validation {
    condition     = var.checkpoint_retention_days >= 1
    error_message = "checkpoint_retention_days must be at least 1."
  }
}

variable "noncurrent_version_retention_days" {
  description = "Days to keep replaced or deleted object versions (versioning is on for both buckets; status.json is rewritten at each state change)."
  type        = number
  default     = 7
}

# --- the upload function -------------------------------------------------------------------

variable "default_backend" {
  description = "Backend for uploads whose configuration names none: custom (Vertex AI custom job with the trainer image) or gemini (Vertex AI supervised tuning)."
  type        = string
  default     = "custom"

  validation {
    condition     = contains(["custom", "gemini"], var.default_backend)
    error_message = "default_backend must be custom or gemini."
  }
}

variable "default_base_model" {
  description = "Base model for uploads whose configuration names none. Empty: droptune's default for the backend."
  type        = string
  default     = ""
}

variable "max_upload_bytes" {
  description = "Larger uploads are rejected unread (DROPTUNE_MAX_UPLOAD_BYTES). 1 GiB is Gemini tuning's file limit; raise the upload function's memory with it."
  type        = number
  default     = 1073741824
}

variable "upload_function" {
  description = "Sizing of the upload function. It spools a file's canonical records to /tmp, which is memory on Cloud Run: memory must exceed max_upload_bytes by about 1 GiB. 540 s is the longest an event-driven function may run."
  type = object({
    memory          = optional(string, "4Gi")
    cpu             = optional(string, "2")
    timeout_seconds = optional(number, 540)
    max_instances   = optional(number, 10)
  })
  default = {}
}

variable "evaluation_function" {
  description = "Sizing of the evaluation function (baseline vs tuned Gemini model on the test split). 3600 s is the longest an HTTP function may run."
  type = object({
    memory          = optional(string, "1Gi")
    cpu             = optional(string, "1")
    timeout_seconds = optional(number, 3600)
    max_instances   = optional(number, 5)
  })
  default = {}
}

variable "function_runtime" {
  description = "Cloud Run functions Python runtime of both functions."
  type        = string
  default     = "python312"
}

variable "function_source_dir" {
  description = "Directory with the functions' deployable source, built by `make function-source`. null: build/function at the repository root."
  type        = string
  default     = null
}

# --- training and serving ------------------------------------------------------------------

variable "trainer_image" {
  description = "Trainer image to use as is (training, evaluation and serving). Empty: build trainer/Dockerfile with Cloud Build during apply and push it to this deployment's registry."
  type        = string
  default     = ""
}

variable "serving_image" {
  description = "Optional serving image; empty: the trainer image serves the model. The workflow starts it with the argument `serve`, health on /health and predictions on /predict, and smoke-tests it with a droptune request ({\"instances\": [{\"messages\": [...]}], \"parameters\": {\"max_new_tokens\": ...}}): an image built from trainer/Dockerfile, or one that answers the same contract."
  type        = string
  default     = ""
}

variable "base_model_bucket" {
  description = "Optional bucket holding base models referenced as gs:// paths; the trainer job's service account gets read access to it."
  type        = string
  default     = null
}

variable "endpoint_id" {
  description = "Vertex AI endpoint id tuned models are deployed to (created by the first run that deploys); default: name_prefix, so that two deployments in one project keep to their own endpoints."
  type        = string
  default     = null
}

variable "poll_seconds" {
  description = "The workflow's first wait for a training job, in seconds; each later wait adds twice the time waited so far (about 3x), up to poll_max_seconds."
  type        = number
  default     = 60
}

variable "poll_max_seconds" {
  description = "The workflow's longest wait between two polls of a training job, in seconds."
  type        = number
  default     = 600
}

variable "workflow_call_log_level" {
  description = "Cloud Workflows call logging: LOG_ERRORS_ONLY, LOG_ALL_CALLS or LOG_NONE."
  type        = string
  default     = "LOG_ERRORS_ONLY"

  validation {
    condition     = contains(["LOG_ERRORS_ONLY", "LOG_ALL_CALLS", "LOG_NONE"], var.workflow_call_log_level)
    error_message = "workflow_call_log_level must be LOG_ERRORS_ONLY, LOG_ALL_CALLS or LOG_NONE."
  }
}

variable "max_delivery_attempts" {
  description = "Deliveries of a run message to the workflow before it goes to the dead-letter topic (5-100)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100 (Pub/Sub's limits)."
  }
}

variable "enable_tensorboard" {
  description = "Create a Vertex AI TensorBoard instance for training curves (billed per GiB stored) and let training jobs write to it."
  type        = bool
  default     = false
}

# --- monitoring ----------------------------------------------------------------------------

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/P/notificationChannels/N) that receive the alerts on failed runs, failed workflow executions and dead-lettered messages."
  type        = list(string)
  default     = []
}

variable "alert_email" {
  description = "Optional e-mail address: creates an e-mail notification channel for the alerts, beside notification_channels."
  type        = string
  default     = null
}
