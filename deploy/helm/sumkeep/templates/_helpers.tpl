{{- define "sumkeep.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sumkeep.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sumkeep.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "sumkeep.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "sumkeep.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sumkeep.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sumkeep.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The Secret holding the database URL, and its key. */}}
{{- define "sumkeep.dbSecret" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecret -}}
{{- else if .Values.database.dsn -}}
{{- printf "%s-db" (include "sumkeep.fullname" .) -}}
{{- else -}}
{{- fail "set database.existingSecret (a Secret holding the postgres:// URL) or database.dsn" -}}
{{- end -}}
{{- end -}}

{{- define "sumkeep.readSecret" -}}
{{- if .Values.readReplica.existingSecret -}}
{{- .Values.readReplica.existingSecret -}}
{{- else if .Values.readReplica.dsn -}}
{{- printf "%s-db-read" (include "sumkeep.fullname" .) -}}
{{- else -}}
{{- fail "readReplica.enabled: set readReplica.existingSecret or readReplica.dsn" -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by serve and sync. */}}
{{- define "sumkeep.env" -}}
- name: SUMKEEP_DB
  valueFrom:
    secretKeyRef:
      name: {{ include "sumkeep.dbSecret" . }}
      key: {{ .Values.database.secretKey }}
{{- with .Values.upstreams }}
- name: SUMKEEP_UPSTREAM
  value: {{ join "," . | quote }}
{{- end }}
- name: SUMKEEP_KEY
  value: {{ .Values.key | quote }}
- name: SUMKEEP_MODE
  value: {{ .Values.mode | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
