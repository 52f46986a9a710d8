{{/* Names and labels shared by the templates. */}}
{{- define "warren.fullname" -}}
{{- if contains "warren" .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-warren" .Release.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "warren.labels" -}}
app.kubernetes.io/name: warren
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "warren.serverSelector" -}}
app.kubernetes.io/name: warren
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "warren.redisSelector" -}}
app.kubernetes.io/name: warren
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{- define "warren.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "warren.fullname" .) -}}
{{- end -}}

{{/* A secret value: given in values, else the one already in the cluster (upgrades), else random. */}}
{{- define "warren.secretValue" -}}
{{- $given := index .root.Values.secrets .key -}}
{{- if $given -}}{{ $given }}{{- else -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace (include "warren.fullname" .root) -}}
{{- if and $existing (index ($existing.data | default dict) .secretKey) -}}{{ index $existing.data .secretKey | b64dec }}{{- else -}}{{ randAlphaNum .length }}{{- end -}}
{{- end -}}
{{- end -}}

{{/* Seconds of a duration like 5s, 2m (the server's own syntax, for the units the chart uses). */}}
{{- define "warren.seconds" -}}
{{- $d := toString . -}}
{{- if hasSuffix "ms" $d -}}{{ div (trimSuffix "ms" $d | int) 1000 }}{{- else if hasSuffix "s" $d -}}{{ trimSuffix "s" $d | int }}{{- else if hasSuffix "m" $d -}}{{ mul (trimSuffix "m" $d | int) 60 }}{{- else -}}{{ fail (printf "duration %q: write it as <n>s or <n>m" $d) }}{{- end -}}
{{- end -}}
