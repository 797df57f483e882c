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

{{/* The chart's NATS Secret: depends on the release name only, because the NATS subchart's
     server reads its password from it through a $tplYaml value rendered in the subchart's scope. */}}
{{- define "kubescribe.natsAuthSecretName" -}}
{{- printf "%s-nats-auth" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubescribe.natsSecretName" -}}
{{- default (include "kubescribe.natsAuthSecretName" .) .Values.natsAuth.existingSecret }}
{{- end }}

{{/* A value kept across upgrades: the existing Secret's key when there is one (lookup returns
     nothing offline), else the given value, else a fresh random one. Call with
     (dict "root" $ "secret" name "key" KEY "value" given). */}}
{{- define "kubescribe.secretValue" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret }}
{{- if .value }}
{{- .value }}
{{- else if and $existing (hasKey (default dict $existing.data) .key) }}
{{- index $existing.data .key | b64dec }}
{{- else }}
{{- randAlphaNum 32 }}
{{- end }}
{{- end }}

{{/* Whether the cluster serves an API ("group/version/Kind"): the live cluster's discovery, or
     capabilities.apiVersions for renders without one (like `helm template --api-versions`). */}}
{{- define "kubescribe.hasApi" -}}
{{- $root := index . 0 }}
{{- $api := index . 1 }}
{{- $assumed := $root.Values.capabilities.apiVersions }}
{{- if or ($root.Capabilities.APIVersions.Has $api) (has $api $assumed) (has (dir $api) $assumed) }}true{{ end }}
{{- end }}

{{- define "kubescribe.kueueActive" -}}
{{- if and .Values.kueue.enabled (include "kubescribe.hasApi" (list . "kueue.x-k8s.io/v1beta2/ClusterQueue")) }}true{{ end }}
{{- end }}

{{- define "kubescribe.kedaActive" -}}
{{- if and .Values.keda.enabled (include "kubescribe.hasApi" (list . "keda.sh/v1alpha1/ScaledObject")) }}true{{ end }}
{{- end }}

{{/* Bytes of a Kubernetes quantity ("32Gi", "500M", 1024): for the JetStream reservation check. */}}
{{- define "kubescribe.bytes" -}}
{{- $q := toString . }}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "K" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 }}
{{- $n := regexFind "^[0-9]+" $q }}
{{- $unit := trimPrefix $n $q }}
{{- if not $n }}{{ fail (printf "not a size: %q" $q) }}{{ end }}
{{- if $unit }}
{{- if not (hasKey $units $unit) }}{{ fail (printf "not a size: %q (use Ki, Mi, Gi, Ti)" $q) }}{{ end }}
{{- mul (atoi $n) (get $units $unit) }}
{{- else }}
{{- atoi $n }}
{{- end }}
{{- end }}

{{/* MIG geometries of the supported GPUs: the model → profile map and one GPU's default quotas
     (profiles from NVIDIA's MIG user guide; the mix is the one DAS can carve at once). */}}
{{- define "kubescribe.gpuPresets" -}}
a100-40gb:
  small: mig-1g.5gb
  medium: mig-2g.10gb
  large: mig-3g.20gb
  quotas: {mig-1g.5gb: 7, mig-2g.10gb: 3, mig-3g.20gb: 2}
a100-80gb:
  small: mig-1g.10gb
  medium: mig-2g.20gb
  large: mig-3g.40gb
  quotas: {mig-1g.10gb: 7, mig-2g.20gb: 3, mig-3g.40gb: 2}
h100-80gb:
  small: mig-1g.10gb
  medium: mig-2g.20gb
  large: mig-3g.40gb
  quotas: {mig-1g.10gb: 7, mig-2g.20gb: 3, mig-3g.40gb: 2}
h100-94gb:
  small: mig-1g.12gb
  medium: mig-2g.24gb
  large: mig-3g.47gb
  quotas: {mig-1g.12gb: 7, mig-2g.24gb: 3, mig-3g.47gb: 2}
h200-141gb:
  small: mig-1g.18gb
  medium: mig-2g.35gb
  large: mig-3g.71gb
  quotas: {mig-1g.18gb: 7, mig-2g.35gb: 3, mig-3g.71gb: 2}
{{- end }}

{{- define "kubescribe.gpuPreset" -}}
{{- $presets := include "kubescribe.gpuPresets" . | fromYaml }}
{{- toYaml (get $presets .Values.gpu.product) }}
{{- end }}

{{/* model → MIG profile: the preset by model size, then dispatcher.profiles. Always explicit, so the
     dispatcher never falls back to a profile the ClusterQueue does not list. */}}
{{- define "kubescribe.profiles" -}}
{{- $p := include "kubescribe.gpuPreset" . | fromYaml }}
{{- $map := dict "tiny.en" $p.small "tiny" $p.small "base.en" $p.small "base" $p.small "small.en" $p.small "small" $p.small "distil-small.en" $p.small "large-v3-turbo" $p.medium "turbo" $p.medium "distil-large-v3" $p.medium "medium.en" $p.medium "medium" $p.medium "large-v3" $p.large "large-v2" $p.large "large" $p.large }}
{{- toJson (merge (deepCopy .Values.dispatcher.profiles) $map) }}
{{- end }}

{{- define "kubescribe.migQuotas" -}}
{{- toJson (default (include "kubescribe.gpuPreset" . | fromYaml).quotas .Values.kueue.clusterQueue.migProfiles) }}
{{- end }}

{{/* Every model the dispatcher may run: the default and the tenants'. The tenants' are sorted:
     sprig's `values` follows Go map order, which changes between renders, and the prefetch
     Job's name hashes this list (a Job spec is immutable). */}}
{{- define "kubescribe.models" -}}
{{- toJson (uniq (prepend (values .Values.dispatcher.tenantModels | sortAlpha) .Values.dispatcher.defaultModel)) }}
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
  emptyDir:
    sizeLimit: 1Gi
{{- end }}

{{/* Pod securityContext: the fixed UIDs go away on OpenShift (restricted-v2 assigns them). */}}
{{- define "kubescribe.podSecurityContext" -}}
{{- $ctx := deepCopy .Values.podSecurityContext }}
{{- if .Values.openshift }}
{{- $ctx = omit $ctx "runAsUser" "runAsGroup" "fsGroup" }}
{{- end }}
{{- toYaml $ctx }}
{{- end }}

{{- define "kubescribe.containerSecurityContext" -}}
{{- $ctx := deepCopy .Values.securityContext }}
{{- if .Values.openshift }}
{{- $ctx = omit $ctx "runAsUser" "runAsGroup" }}
{{- end }}
{{- toYaml $ctx }}
{{- end }}

{{- define "kubescribe.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{- define "kubescribe.transcriberServiceAccountName" -}}
{{- default (include "kubescribe.componentName" (dict "root" . "component" "transcriber")) .Values.transcriber.serviceAccountName }}
{{- end }}
