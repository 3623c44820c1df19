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
{{ required "set store.endpoint (host:port of the S3 endpoint) when minio.enabled=false" .Values.store.endpoint }}
{{- end -}}
{{- end }}

{{- define "quantum-slm.endpointURL" -}}
{{ ternary "http" "https" .Values.store.insecure }}://{{ include "quantum-slm.endpoint" . }}
{{- end }}

{{/* registry/repository:tag@digest; the digest is what the node pulls, the tag names the release. */}}
{{- define "quantum-slm.image" -}}
{{ with .registry }}{{ . }}/{{ end }}{{ .repository }}{{ with .tag }}:{{ . }}{{ end }}{{ with .digest }}@{{ . }}{{ end }}
{{- end }}

{{- define "quantum-slm.minioImage" -}}
{{ include "quantum-slm.image" .Values.minio.image }}
{{- end }}

{{- define "quantum-slm.clientImage" -}}
{{- if .Values.minio.clientImage.repository -}}
{{ include "quantum-slm.image" .Values.minio.clientImage }}
{{- else -}}
{{ include "quantum-slm.minioImage" . }}
{{- end -}}
{{- end }}

{{/* A credential value, required unless the Secrets are made outside the chart (secrets.existing). */}}
{{- define "quantum-slm.credential" -}}
{{- $v := required (printf "set %s (%s; no default on purpose), or make the Secrets yourself with secrets.existing=true" .name .what) .value -}}
{{- if lt (len $v) (int .min) }}{{ fail (printf "%s must have at least %d characters (MinIO refuses shorter ones)" .name (int .min)) }}{{ end -}}
{{ $v }}
{{- end }}

{{/* The pod securityContext of the chart's own pods: Pod Security "restricted". */}}
{{- define "quantum-slm.podSecurity" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "quantum-slm.containerSecurity" -}}
allowPrivilegeEscalation: false
capabilities: {drop: [ALL]}
{{- end }}
