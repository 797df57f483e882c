{{/* Chart name, cut to 63 characters (the DNS label limit). */}}
{{- define "kubescribe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; a release name containing the chart name is used as is. */}}
{{- define "kubescribe.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A component's object name: <fullname>-<component>, cut to 63 characters. */}}
{{- define "kubescribe.componentName" -}}
{{- printf "%s-%s" (include "kubescribe.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubescribe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels. */}}
{{- define "kubescribe.labels" -}}
helm.sh/chart: {{ include "kubescribe.chart" . }}
{{ include "kubescribe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubescribe
{{- end }}

{{/* Selector labels. */}}
{{- define "kubescribe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubescribe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: call with (dict "root" $ "component" "ingest"). */}}
{{- define "kubescribe.componentLabels" -}}
{{ include "kubescribe.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "kubescribe.componentSelectorLabels" -}}
{{ include "kubescribe.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "kubescribe.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "kubescribe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubescribe.componentName" (dict "root" . "component" "dispatcher")) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kubescribe.envConfigMapName" -}}
{{- include "kubescribe.componentName" (dict "root" . "component" "env") }}
{{- end }}

{{- define "kubescribe.natsSecretName" -}}
{{- default (include "kubescribe.componentName" (dict "root" . "component" "nats")) .Values.natsAuth.existingSecret }}
{{- end }}

{{- define "kubescribe.apiTokenSecretName" -}}
{{- default (include "kubescribe.componentName" (dict "root" . "component" "api-token")) .Values.apiToken.existingSecret }}
{{- end }}

{{- define "kubescribe.llmSecretName" -}}
{{- include "kubescribe.componentName" (dict "root" . "component" "llm") }}
{{- end }}

{{/* Name of the NATS dependency's objects, as the official chart names them. */}}
{{- define "kubescribe.natsFullname" -}}
{{- if .Values.nats.fullnameOverride }}
{{- .Values.nats.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains "nats" .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-nats" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The NATS URL the services and Jobs use. */}}
{{- define "kubescribe.natsUrl" -}}
{{- if .Values.nats.enabled }}
{{- printf "nats://%s.%s.svc:4222" (include "kubescribe.natsFullname" .) .Release.Namespace }}
{{- else if .Values.externalNats.url }}
{{- .Values.externalNats.url }}
{{- else if not .Values.natsAuth.existingSecret }}
{{- fail "NATS: set nats.enabled=true (the official NATS chart), externalNats.url, or natsAuth.existingSecret" }}
{{- end }}
{{- end }}

{{/* host:port of the NATS monitoring endpoint KEDA reads consumer lag from. */}}
{{- define "kubescribe.natsMonitoringEndpoint" -}}
{{- if .Values.keda.natsServerMonitoringEndpoint }}
{{- .Values.keda.natsServerMonitoringEndpoint }}
{{- else if .Values.nats.enabled }}
{{- printf "%s-headless.%s.svc.cluster.local:8222" (include "kubescribe.natsFullname" .) .Release.Namespace }}
{{- else if .Values.externalNats.monitoringEndpoint }}
{{- .Values.externalNats.monitoringEndpoint }}
{{- else }}
{{- fail "KEDA: set externalNats.monitoringEndpoint (host:8222) or keda.natsServerMonitoringEndpoint, or keda.enabled=false" }}
{{- end }}
{{- end }}

{{- define "kubescribe.llmSimName" -}}
{{- include "kubescribe.componentName" (dict "root" . "component" "llm-sim") }}
{{- end }}

{{/* The OpenAI-compatible base URL the summarizer calls. */}}
{{- define "kubescribe.llmBaseUrl" -}}
{{- if .Values.llm.baseUrl }}
{{- .Values.llm.baseUrl }}
{{- else if .Values.devModelServer.enabled }}
{{- printf "http://%s.%s.svc:%d/v1" (include "kubescribe.llmSimName" .) .Release.Namespace (int .Values.devModelServer.port) }}
{{- else }}
{{- fail "LLM: set llm.baseUrl (an llm-d / GAIE gateway) or devModelServer.enabled=true" }}
{{- end }}
{{- end }}

{{- define "kubescribe.localQueue" -}}
{{- default (include "kubescribe.fullname" .) .Values.kueue.localQueue }}
{{- end }}

{{- define "kubescribe.clusterQueue" -}}
{{- default (include "kubescribe.fullname" .) .Values.kueue.clusterQueue.name }}
{{- end }}

{{- define "kubescribe.resourceFlavor" -}}
{{- default (printf "%s-default" (include "kubescribe.fullname" .)) .Values.kueue.resourceFlavor.name }}
{{- end }}

{{/* priority → WorkloadPriorityClass name, as JSON for KUBESCRIBE_KUBERNETES_PRIORITY_CLASSES. */}}
{{- define "kubescribe.priorityClassesJson" -}}
{{- $out := dict }}
{{- if .Values.kueue.enabled }}
{{- range $priority, $value := .Values.kueue.priorityClasses }}
{{- $_ := set $out $priority (printf "%s-%s" (include "kubescribe.fullname" $) $priority) }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{- define "kubescribe.modelCacheClaim" -}}
{{- default (include "kubescribe.componentName" (dict "root" . "component" "models")) .Values.transcriber.modelCache.existingClaim }}
{{- end }}

{{/* Annotations that restart pods when their configuration changes. */}}
{{- define "kubescribe.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secrets: {{ include (print .Template.BasePath "/secrets.yaml") . | sha256sum }}
{{- end }}

{{/* envFrom of every kubescribe container: shared settings, then the NATS Secret. */}}
{{- define "kubescribe.envFrom" -}}
- configMapRef:
    name: {{ include "kubescribe.envConfigMapName" . }}
- secretRef:
    name: {{ include "kubescribe.natsSecretName" . }}
{{- end }}

{{/* The writable /tmp of a read-only root filesystem. */}}
{{- define "kubescribe.tmpVolume" -}}
- name: tmp
  emptyDir: {}
{{- end }}

{{- define "kubescribe.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}
