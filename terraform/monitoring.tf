# What to watch: log-based metrics of the runs' state changes, a dashboard, three alert
# policies, and the optional Vertex AI TensorBoard instance for training curves.
#
# State changes are logged by two units, in two shapes, so they are counted by two metrics
# with the same `state` label:
#   <prefix>/intake_state  the upload function: one JSON line per change with the state as a
#                          log label (labels.state): VALIDATING, QUEUED, REJECTED, FAILED
#   <prefix>/run_state     the workflow: sys.log with a JSON payload (jsonPayload.state):
#                          TRAINING ... SUCCEEDED, GATED, CANCELLED, FAILED

locals {
  intake_state_metric = "logging.googleapis.com/user/${google_logging_metric.intake_state.name}"
  run_state_metric    = "logging.googleapis.com/user/${google_logging_metric.run_state.name}"

  function_services = "one_of(\"${local.upload_function_name}\", \"${local.evaluation_function_name}\")"

  alert_channels = concat(
    var.notification_channels,
    google_monitoring_notification_channel.email[*].id,
  )
}

resource "google_logging_metric" "intake_state" {
  project     = var.project_id
  name        = "${var.name_prefix}/intake_state"
  description = "droptune: state changes of runs in the upload function (VALIDATING, QUEUED, REJECTED, FAILED), by state."
  filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${local.upload_function_name}\"",
    "labels.state:*",
  ])

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "droptune intake state changes"
    labels {
      key         = "state"
      value_type  = "STRING"
      description = "The state the run moved to."
    }
  }
  label_extractors = {
    state = "EXTRACT(labels.state)"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_logging_metric" "run_state" {
  project     = var.project_id
  name        = "${var.name_prefix}/run_state"
  description = "droptune: state changes of runs in the pipeline workflow (TRAINING ... SUCCEEDED, GATED, CANCELLED, FAILED), by state."
  filter = join(" AND ", [
    "resource.type=\"workflows.googleapis.com/Workflow\"",
    "resource.labels.workflow_id=\"${local.workflow_name}\"",
    "jsonPayload.state:*",
  ])

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "droptune run state changes"
    labels {
      key         = "state"
      value_type  = "STRING"
      description = "The state the run moved to."
    }
  }
  label_extractors = {
    state = "EXTRACT(jsonPayload.state)"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_dashboard" "droptune" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName = "droptune"
    gridLayout = {
      columns = 2
      widgets = [
        {
          title = "Runs by state: upload function (per hour)"
          xyChart = {
            dataSets = [{
              plotType = "STACKED_BAR"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = "metric.type=\"${local.intake_state_metric}\" AND resource.type=\"cloud_run_revision\""
                  aggregation = {
                    alignmentPeriod    = "3600s"
                    perSeriesAligner   = "ALIGN_SUM"
                    crossSeriesReducer = "REDUCE_SUM"
                    groupByFields      = ["metric.label.state"]
                  }
                }
              }
            }]
          }
        },
        {
          title = "Runs by state: workflow (per hour)"
          xyChart = {
            dataSets = [{
              plotType = "STACKED_BAR"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = "metric.type=\"${local.run_state_metric}\" AND resource.type=\"workflows.googleapis.com/Workflow\""
                  aggregation = {
                    alignmentPeriod    = "3600s"
                    perSeriesAligner   = "ALIGN_SUM"
                    crossSeriesReducer = "REDUCE_SUM"
                    groupByFields      = ["metric.label.state"]
                  }
                }
              }
            }]
          }
        },
        {
          title = "Function errors: 5xx responses and ERROR log lines"
          xyChart = {
            dataSets = [
              {
                plotType       = "LINE"
                legendTemplate = "5xx $${resource.labels.service_name}"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND resource.label.service_name=${local.function_services} AND metric.label.response_code_class=\"5xx\""
                    aggregation = {
                      alignmentPeriod    = "300s"
                      perSeriesAligner   = "ALIGN_SUM"
                      crossSeriesReducer = "REDUCE_SUM"
                      groupByFields      = ["resource.label.service_name"]
                    }
                  }
                }
              },
              {
                plotType       = "LINE"
                legendTemplate = "ERROR logs $${resource.labels.service_name}"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"logging.googleapis.com/log_entry_count\" AND resource.type=\"cloud_run_revision\" AND resource.label.service_name=${local.function_services} AND metric.label.severity=\"ERROR\""
                    aggregation = {
                      alignmentPeriod    = "300s"
                      perSeriesAligner   = "ALIGN_SUM"
                      crossSeriesReducer = "REDUCE_SUM"
                      groupByFields      = ["resource.label.service_name"]
                    }
                  }
                }
              },
            ]
          }
        },
        {
          title = "Workflow executions by result (per hour)"
          xyChart = {
            dataSets = [{
              plotType = "STACKED_BAR"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = "metric.type=\"workflows.googleapis.com/finished_execution_count\" AND resource.type=\"workflows.googleapis.com/Workflow\" AND resource.label.workflow_id=\"${local.workflow_name}\""
                  aggregation = {
                    alignmentPeriod    = "3600s"
                    perSeriesAligner   = "ALIGN_SUM"
                    crossSeriesReducer = "REDUCE_SUM"
                    groupByFields      = ["metric.label.status"]
                  }
                }
              }
            }]
          }
        },
        {
          # A run's execution is its training job plus a few minutes of evaluation and deployment.
          title = "Run durations, training included (workflow executions, p50 and p95)"
          xyChart = {
            dataSets = [
              for percentile in ["50", "95"] : {
                plotType       = "LINE"
                legendTemplate = "p${percentile}"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"workflows.googleapis.com/execution_times\" AND resource.type=\"workflows.googleapis.com/Workflow\" AND resource.label.workflow_id=\"${local.workflow_name}\""
                    aggregation = {
                      alignmentPeriod    = "3600s"
                      perSeriesAligner   = "ALIGN_DELTA"
                      crossSeriesReducer = "REDUCE_PERCENTILE_${percentile}"
                    }
                  }
                }
              }
            ]
          }
        },
        {
          title = "Dead-lettered run messages"
          xyChart = {
            dataSets = [{
              plotType = "STACKED_BAR"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = "metric.type=\"pubsub.googleapis.com/topic/send_message_operation_count\" AND resource.type=\"pubsub_topic\" AND resource.label.topic_id=\"${google_pubsub_topic.dead_letter.name}\""
                  aggregation = {
                    alignmentPeriod  = "3600s"
                    perSeriesAligner = "ALIGN_SUM"
                  }
                }
              }
            }]
          }
        },
      ]
    }
  })

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_notification_channel" "email" {
  count = var.alert_email == null ? 0 : 1

  project      = var.project_id
  display_name = "droptune alerts"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }

  depends_on = [google_project_service.enabled]
}

# Alerts on a run that ended FAILED match the units' log lines themselves (log-match
# conditions), not the log-based metrics above: Monitoring refuses a metric condition on a
# log-based metric for up to 10 minutes after the metric is created (404 "Cannot find
# metric(s)", terraform-provider-google issue 11102), and depends_on cannot wait for that, so
# a first apply would stop there. A log-match condition needs no metric. Monitoring allows one
# such condition per policy, hence a policy per unit; each names the run in its notification.
locals {
  failed_run_logs = {
    upload = {
      unit   = "upload function"
      filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.upload_function_name}\" AND labels.state=\"FAILED\""
      run_id = "EXTRACT(labels.run_id)"
    }
    workflow = {
      unit   = "pipeline workflow"
      filter = "resource.type=\"workflows.googleapis.com/Workflow\" AND resource.labels.workflow_id=\"${local.workflow_name}\" AND jsonPayload.state=\"FAILED\""
      run_id = "EXTRACT(jsonPayload.run_id)"
    }
  }

  # Failures no log line of droptune's says: built-in metrics, which exist with their APIs.
  failure_conditions = {
    "Workflow execution failed" = "metric.type=\"workflows.googleapis.com/finished_execution_count\" AND resource.type=\"workflows.googleapis.com/Workflow\" AND resource.label.workflow_id=\"${local.workflow_name}\" AND metric.label.status=\"FAILED\""
    "Run message dead-lettered" = "metric.type=\"pubsub.googleapis.com/topic/send_message_operation_count\" AND resource.type=\"pubsub_topic\" AND resource.label.topic_id=\"${google_pubsub_topic.dead_letter.name}\""
  }
}

resource "google_monitoring_alert_policy" "run_failed" {
  for_each = local.failed_run_logs

  project               = var.project_id
  display_name          = "droptune: a run FAILED in the ${each.value.unit}"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_channels
  user_labels           = local.common_labels

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      droptune run $${log.extracted_label.run_id} ended FAILED in the ${each.value.unit}.
      Its `status.json` in gs://${local.runs_bucket}/runs/$${log.extracted_label.run_id}/
      holds the error; `droptune runs show $${log.extracted_label.run_id}` says where.
    EOT
  }

  conditions {
    display_name = "A run FAILED in the ${each.value.unit}"
    condition_matched_log {
      filter           = each.value.filter
      label_extractors = { run_id = each.value.run_id }
    }
  }

  # Required for log-match conditions: at most one notification per 5 minutes.
  alert_strategy {
    notification_rate_limit {
      period = "300s"
    }
    auto_close = "604800s"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "failures" {
  project               = var.project_id
  display_name          = "droptune: a workflow execution failed or a run message was dead-lettered"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_channels
  user_labels           = local.common_labels

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      A pipeline workflow execution failed (a run it could not even mark FAILED), or a run
      message was dead-lettered. The workflow's executions are in the console under
      Workflows > ${local.workflow_name}; dead-lettered messages wait in the subscription
      ${local.dead_letter_topic_name}; the run's `status.json` is in
      gs://${local.runs_bucket}/runs/<run_id>/.
    EOT
  }

  # Each condition fires on any count in a 5-minute window of its metric.
  dynamic "conditions" {
    for_each = local.failure_conditions
    content {
      display_name = conditions.key
      condition_threshold {
        filter          = conditions.value
        comparison      = "COMPARISON_GT"
        threshold_value = 0
        duration        = "0s"
        aggregations {
          alignment_period   = "300s"
          per_series_aligner = "ALIGN_SUM"
        }
        trigger {
          count = 1
        }
      }
    }
  }

  alert_strategy {
    auto_close = "604800s"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_vertex_ai_tensorboard" "training" {
  #checkov:skip=CKV2_GCP_26:Holds training curves (loss, learning rate, step times), not training data; Google-managed encryption.
  count = var.enable_tensorboard ? 1 : 0

  project      = var.project_id
  region       = var.region
  display_name = "${var.name_prefix}-training"
  description  = "droptune training curves (loss, learning rate) of custom-backend runs."
  labels       = local.common_labels

  depends_on = [google_project_service.enabled]
}
