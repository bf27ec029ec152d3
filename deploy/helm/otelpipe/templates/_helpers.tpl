{{- define "otelpipe.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "otelpipe.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "otelpipe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "otelpipe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end -}}

{{- define "otelpipe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "otelpipe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "otelpipe.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The pipeline config: .Values.config, or the mode's default file. */}}
{{- define "otelpipe.config" -}}
{{- if .Values.config -}}
{{ toYaml .Values.config }}
{{- else if eq .Values.mode "sidecar" -}}
{{ .Files.Get "files/sidecar.yaml" }}
{{- else if eq .Values.mode "statefulset" -}}
{{ .Files.Get "files/gateway-disk.yaml" }}
{{- else -}}
{{ .Files.Get "files/gateway.yaml" }}
{{- end -}}
{{- end -}}

{{/* The otelpipe container, the same in every mode. */}}
{{- define "otelpipe.container" -}}
- name: otelpipe
  image: {{ include "otelpipe.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["-c", "/etc/otelpipe/otelpipe.yaml"]
  env:
    {{- if eq .Values.mode "sidecar" }}
    - {name: OTELPIPE_GATEWAY_ENDPOINT, value: {{ .Values.sidecar.gatewayEndpoint | quote }}}
    {{- else }}
    - {name: OTELPIPE_BACKEND_ENDPOINT, value: {{ .Values.gateway.backendEndpoint | quote }}}
    {{- end }}
    - name: K8S_POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: K8S_POD_UID
      valueFrom: {fieldRef: {fieldPath: metadata.uid}}
    - name: K8S_NAMESPACE_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
    - name: K8S_NODE_NAME
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    {{- if ne .Values.mode "sidecar" }}
    - {name: otlp-grpc, containerPort: 4317}
    - {name: otlp-http, containerPort: 4318}
    {{- end }}
    - {name: health, containerPort: 13133}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - {name: config, mountPath: /etc/otelpipe, readOnly: true}
    - {name: data, mountPath: /var/lib/otelpipe}
{{- end -}}

{{- define "otelpipe.podSpecCommon" -}}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "otelpipe.podMeta" -}}
labels:
  {{- include "otelpipe.selectorLabels" . | nindent 2 }}
  {{- with .Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  checksum/config: {{ include "otelpipe.config" . | sha256sum }}
  {{- with .Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}
