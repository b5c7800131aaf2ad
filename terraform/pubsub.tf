# Run messages: the upload function publishes one per valid upload to the run topic; an
# Eventarc trigger starts one execution of the pipeline workflow per message. Messages that
# cannot be delivered after max_delivery_attempts go to the dead-letter topic, where a
# subscription keeps them for a week (and an alert in monitoring.tf says so).

resource "google_pubsub_topic" "runs" {
  #checkov:skip=CKV_GCP_83:Run messages hold only a run id, a gs:// path and a backend name; CMEK would add a key to manage for no protected data.
  project = var.project_id
  name    = local.topic_name
  labels  = local.common_labels

  # Kept for a day, so a message can be replayed (seek) if a workflow revision was broken.
  message_retention_duration = "86400s"

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Dead-lettered run messages hold only a run id, a gs:// path and a backend name.
  project = var.project_id
  name    = local.dead_letter_topic_name
  labels  = local.common_labels

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_subscription" "dead_letter" {
  project = var.project_id
  name    = local.dead_letter_topic_name
  topic   = google_pubsub_topic.dead_letter.id
  labels  = local.common_labels

  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60
  expiration_policy {
    ttl = "" # never expires, even when nobody pulls from it
  }
}

resource "google_eventarc_trigger" "workflow" {
  project         = var.project_id
  name            = "${var.name_prefix}-runs-to-workflow"
  location        = var.region
  service_account = google_service_account.eventarc.email
  labels          = local.common_labels

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.pubsub.topic.v1.messagePublished"
  }

  transport {
    pubsub {
      topic = google_pubsub_topic.runs.id
    }
  }

  destination {
    workflow = google_workflows_workflow.pipeline.id
  }

  depends_on = [
    google_project_service.enabled,
    google_project_service_identity.eventarc,
    time_sleep.iam_propagation,
  ]
}

# Eventarc creates and owns the subscription that delivers the run topic to the workflow and
# has no argument for its dead-letter policy, so the policy is set on that subscription with
# gcloud once the trigger exists (again whenever the trigger, hence the subscription, is new).
resource "terraform_data" "workflow_dead_letter" {
  triggers_replace = [
    google_eventarc_trigger.workflow.transport[0].pubsub[0].subscription,
    google_pubsub_topic.dead_letter.id,
    var.max_delivery_attempts,
  ]

  provisioner "local-exec" {
    command = join(" ", [
      "gcloud pubsub subscriptions update",
      google_eventarc_trigger.workflow.transport[0].pubsub[0].subscription,
      "--project=${var.project_id}",
      "--dead-letter-topic=${google_pubsub_topic.dead_letter.id}",
      "--max-delivery-attempts=${var.max_delivery_attempts}",
      "--min-retry-delay=10s",
      "--max-retry-delay=600s",
    ])
  }

  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_pubsub_subscription_iam_member.workflow_delivery_subscriber,
  ]
}
