{{/* Names and labels shared by every template. */}}

{{- define "quantum-slm.labels" -}}
app.kubernetes.io/name: quantum-slm
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "quantum-slm.minioSelector" -}}
app.kubernetes.io/name: quantum-slm
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: minio
{{- end }}

{{/* host:port of the S3 endpoint the pods use. */}}
{{- define "quantum-slm.endpoint" -}}
{{- if .Values.store.endpoint -}}
{{ .Values.store.endpoint }}
{{- else if .Values.minio.enabled -}}
quantum-slm-minio.{{ .Release.Namespace }}.svc:9000
{{- else -}}
{{ required "store.endpoint is required when minio.enabled=false" .Values.minio.externalEndpoint }}
{{- end -}}
{{- end }}

{{- define "quantum-slm.endpointURL" -}}
{{ ternary "http" "https" .Values.store.insecure }}://{{ include "quantum-slm.endpoint" . }}
{{- end }}

{{- define "quantum-slm.minioImage" -}}
{{- with .Values.minio.image -}}
{{ .repository }}:{{ .tag }}{{ if .digest }}@{{ .digest }}{{ end }}
{{- end -}}
{{- end }}

{{- define "quantum-slm.clientImage" -}}
{{ .Values.minio.clientImage | default (include "quantum-slm.minioImage" .) }}
{{- end }}

{{- define "quantum-slm.rootUser" -}}
{{ required "set minio.rootUser (the MinIO root user; no default on purpose)" .Values.minio.rootUser }}
{{- end }}

{{- define "quantum-slm.rootPassword" -}}
{{- $p := required "set minio.rootPassword (at least 8 characters; no default on purpose)" .Values.minio.rootPassword -}}
{{- if lt (len $p) 8 }}{{ fail "minio.rootPassword must have at least 8 characters (MinIO refuses shorter ones)" }}{{ end -}}
{{ $p }}
{{- end }}
