{{/* Names, labels and the pieces every workload shares. */}}

{{- define "sipcapture.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sipcapture.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sipcapture.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "sipcapture.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sipcapture
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "storer"). */}}
{{- define "sipcapture.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sipcapture.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sipcapture.componentLabels" -}}
{{ include "sipcapture.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- /* repository@digest when image.digest is set (the tag is then ignored), else repository:tag. */}}
{{- define "sipcapture.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- /* `[grpc_limits]` of every service from the global `grpcLimits` map, merged into a service's own keys. */}}
{{- define "sipcapture.grpcLimits" -}}
{{- with .Values.grpcLimits -}}
{{- toYaml (dict "grpc_limits" .) -}}
{{- end -}}
{{- end -}}

{{- define "sipcapture.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sipcapture.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Service names and the addresses members use to reach each other. */}}
{{- define "sipcapture.controlServiceName" -}}
{{- printf "%s-control" (include "sipcapture.fullname" .) -}}
{{- end -}}

{{- define "sipcapture.storerHeadlessName" -}}
{{- printf "%s-storer-headless" (include "sipcapture.fullname" .) -}}
{{- end -}}

{{- define "sipcapture.controlUrl" -}}
{{- if .Values.control.enabled -}}
{{- printf "%s://%s.%s.svc.%s:%d" (ternary "https" "http" .Values.grpcTls.enabled) (include "sipcapture.controlServiceName" .) .Release.Namespace .Values.clusterDomain (int .Values.control.grpcPort) -}}
{{- else -}}
{{- .Values.control.externalUrl -}}
{{- end -}}
{{- end -}}

{{/* The storers' headless Service as a `storer_dns` / `member_dns` entry (host:port). */}}
{{- define "sipcapture.storerDns" -}}
{{- printf "%s.%s.svc.%s:%d" (include "sipcapture.storerHeadlessName" .) .Release.Namespace .Values.clusterDomain (int .Values.storer.grpcPort) -}}
{{- end -}}

{{- define "sipcapture.listen" -}}
{{- printf "%s:%d" .root.Values.listenHost (int .port) -}}
{{- end -}}

{{/* Secret names: the chart's own Secret unless an existing one is referenced. */}}
{{- define "sipcapture.secretName" -}}
{{- include "sipcapture.fullname" . -}}
{{- end -}}

{{- define "sipcapture.hepTlsSecretName" -}}
{{- default (printf "%s-hep-tls" (include "sipcapture.fullname" .)) .Values.collector.hepTls.existingSecret -}}
{{- end -}}

{{/* Whether the chart's Secret has any key to hold. */}}
{{- define "sipcapture.ownSecretNeeded" -}}
{{- if or (include "sipcapture.ownAuthToken" .) (and .Values.storer.enabled .Values.storer.database.url (not .Values.storer.database.existingSecret)) (and .Values.collector.hepAuth.key (not .Values.collector.hepAuth.existingSecret)) -}}
true
{{- end -}}
{{- end -}}

{{- define "sipcapture.collectorConfigured" -}}
{{- if or .Values.collector.enabled .Values.collector.external.enabled .Values.collector.sidecar.configMap .Values.collector.sidecar.example.enabled -}}
true
{{- end -}}
{{- end -}}

{{/*
Environment entries passing secrets as config keys. Only SIPCAPTURE_* names that are config keys
of the service are set: the services refuse unknown ones.
*/}}
{{/* Whether the chart's Secret holds the token (given, or generated). */}}
{{- define "sipcapture.ownAuthToken" -}}
{{- if and (not .Values.auth.existingSecret) (or .Values.auth.token .Values.auth.generateToken) -}}
true
{{- end -}}
{{- end -}}

{{/*
The token the chart's Secret holds: auth.token, else the one an earlier release generated (looked
up, so upgrades keep it), else a new random one.
*/}}
{{- define "sipcapture.authTokenValue" -}}
{{- if .Values.auth.token -}}
{{- .Values.auth.token -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "sipcapture.secretName" .) -}}
{{- $data := dig "data" "auth-token" "" ($existing | default dict) -}}
{{- if $data -}}
{{- $data | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sipcapture.authTokenEnv" -}}
{{- if .Values.auth.allowInsecure }}
- name: SIPCAPTURE_ALLOW_INSECURE
  value: "true"
{{- end }}
{{- if or (include "sipcapture.ownAuthToken" .) .Values.auth.existingSecret }}
- name: SIPCAPTURE_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      {{- if .Values.auth.existingSecret }}
      name: {{ .Values.auth.existingSecret }}
      key: {{ .Values.auth.existingSecretKey }}
      {{- else }}
      name: {{ include "sipcapture.secretName" . }}
      key: auth-token
      {{- end }}
{{- end }}
{{- end -}}

{{- define "sipcapture.commonEnv" -}}
{{- if .Values.logLevel }}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
{{- end }}
{{- if .Values.metrics.enabled }}
- name: SIPCAPTURE_METRICS_LISTEN
  value: {{ include "sipcapture.listen" (dict "root" . "port" .Values.metrics.port) | quote }}
{{- end }}
{{- end -}}

{{/* Env of the collector container. */}}
{{- define "sipcapture.collectorEnv" -}}
{{- $c := .Values.collector -}}
{{- include "sipcapture.commonEnv" . }}
{{- include "sipcapture.authTokenEnv" . }}
{{- if or $c.hepAuth.key $c.hepAuth.existingSecret }}
- name: SIPCAPTURE_HEP_AUTH_KEY
  valueFrom:
    secretKeyRef:
      {{- if $c.hepAuth.existingSecret }}
      name: {{ $c.hepAuth.existingSecret }}
      key: {{ $c.hepAuth.existingSecretKey }}
      {{- else }}
      name: {{ include "sipcapture.secretName" . }}
      key: hep-auth-key
      {{- end }}
{{- end }}
{{- with $c.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Env of the storer container: the default mode's URL and named modes' URLs from Secrets. */}}
{{- define "sipcapture.storerEnv" -}}
{{- $s := .Values.storer -}}
{{- include "sipcapture.commonEnv" . }}
{{- include "sipcapture.authTokenEnv" . }}
{{- if or $s.database.url $s.database.existingSecret }}
- name: SIPCAPTURE_DB_URL
  valueFrom:
    secretKeyRef:
      {{- if $s.database.existingSecret }}
      name: {{ $s.database.existingSecret }}
      key: {{ $s.database.existingSecretKey }}
      {{- else }}
      name: {{ include "sipcapture.secretName" . }}
      key: db-url
      {{- end }}
{{- end }}
{{- range $mode, $ref := $s.captureModeSecrets }}
- name: {{ printf "SIPCAPTURE_CAPTURE_MODE__%s__DB_URL" (upper $mode) }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name }}
      key: {{ $ref.key }}
{{- end }}
{{- with $s.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Env of the control container. */}}
{{- define "sipcapture.controlEnv" -}}
{{- include "sipcapture.commonEnv" . }}
{{- include "sipcapture.authTokenEnv" . }}
{{- with .Values.control.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* grpc.health.v1 probes on a port: (dict "root" $ "port" 9063), optionally
"livenessService": the gRPC service the liveness probe checks instead of the overall entry
(the storer's overall health follows its database: a database outage must make it unready, not
restart it). */}}
{{- define "sipcapture.probes" -}}
{{- $p := .root.Values.probes -}}
{{- /* The kubelet's gRPC probe speaks plaintext only: with grpcTls a TCP connect probe. */}}
{{- $kind := ternary "tcpSocket" "grpc" .root.Values.grpcTls.enabled -}}
readinessProbe:
  {{ $kind }}:
    port: {{ .port }}
  initialDelaySeconds: {{ $p.initialDelaySeconds }}
  periodSeconds: {{ $p.periodSeconds }}
  timeoutSeconds: {{ $p.timeoutSeconds }}
  failureThreshold: {{ $p.readinessFailureThreshold }}
livenessProbe:
  {{ $kind }}:
    port: {{ .port }}
    {{- if and .livenessService (eq $kind "grpc") }}
    service: {{ .livenessService }}
    {{- end }}
  initialDelaySeconds: {{ $p.initialDelaySeconds }}
  periodSeconds: {{ $p.periodSeconds }}
  timeoutSeconds: {{ $p.timeoutSeconds }}
  failureThreshold: {{ $p.livenessFailureThreshold }}
{{- if $p.startup.enabled }}
{{- /* The liveness check, given periodSeconds x failureThreshold to pass once before liveness
and readiness probing starts (slow volumes, a database migration on first start). */}}
startupProbe:
  {{ $kind }}:
    port: {{ .port }}
    {{- if and .livenessService (eq $kind "grpc") }}
    service: {{ .livenessService }}
    {{- end }}
  periodSeconds: {{ $p.startup.periodSeconds }}
  timeoutSeconds: {{ $p.timeoutSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
{{- end }}
{{- end -}}

{{/*
TOML rendering. A config is a map of the service's keys: scalars and lists first, then tables
(`[capture_mode]`), then arrays of tables (`[[route]]`); nested values are inline tables. Strings
are JSON-quoted, which is valid TOML basic-string syntax. Null values are left out (the service
default applies).
*/}}
{{- define "sipcapture.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "sipcapture.tomlValue" -}}
{{- if kindIs "map" . -}}
{{- $parts := list -}}
{{- range $k, $v := . -}}
{{- if not (kindIs "invalid" $v) -}}
{{- $parts = append $parts (printf "%s = %s" (include "sipcapture.tomlKey" $k) (include "sipcapture.tomlValue" $v)) -}}
{{- end -}}
{{- end -}}
{{- if $parts -}}{ {{ join ", " $parts }} }{{- else -}}{}{{- end -}}
{{- else if kindIs "slice" . -}}
{{- $parts := list -}}
{{- range . -}}
{{- $parts = append $parts (include "sipcapture.tomlValue" .) -}}
{{- end -}}
[{{ join ", " $parts }}]
{{- else -}}
{{- toJson . -}}
{{- end -}}
{{- end -}}

{{- define "sipcapture.toml" -}}
{{- $cfg := . -}}
{{- range $k, $v := $cfg }}
{{- $table := or (kindIs "map" $v) (and (kindIs "slice" $v) $v (kindIs "map" (first $v))) }}
{{- if and (not (kindIs "invalid" $v)) (not $table) }}
{{ include "sipcapture.tomlKey" $k }} = {{ include "sipcapture.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $k, $v := $cfg }}
{{- if kindIs "map" $v }}

[{{ include "sipcapture.tomlKey" $k }}]
{{- range $k2, $v2 := $v }}
{{- if not (kindIs "invalid" $v2) }}
{{ include "sipcapture.tomlKey" $k2 }} = {{ include "sipcapture.tomlValue" $v2 }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- range $k, $v := $cfg }}
{{- if and (kindIs "slice" $v) $v (kindIs "map" (first $v)) }}
{{- range $item := $v }}

[[{{ include "sipcapture.tomlKey" $k }}]]
{{- range $k2, $v2 := $item }}
{{- if not (kindIs "invalid" $v2) }}
{{ include "sipcapture.tomlKey" $k2 }} = {{ include "sipcapture.tomlValue" $v2 }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The collector's config map: chart-owned keys over `collector.config`. */}}
{{- define "sipcapture.collectorConfig" -}}
{{- $c := .Values.collector -}}
{{- $own := dict
  "grpc_listen" (include "sipcapture.listen" (dict "root" . "port" $c.grpcPort))
  "hep_listen" (include "sipcapture.listen" (dict "root" . "port" $c.hepPort))
  "spool_dir" "/var/spool/sipcapture"
-}}
{{- $url := include "sipcapture.controlUrl" . -}}
{{- if $url -}}{{- $_ := set $own "control" $url -}}{{- end -}}
{{- if $c.storers -}}
{{- $_ := set $own "storer" $c.storers -}}
{{- $_ := set $own "storer_dns" list -}}
{{- else if .Values.storer.enabled -}}
{{- $_ := set $own "storer" list -}}
{{- $_ := set $own "storer_dns" (list (include "sipcapture.storerDns" .)) -}}
{{- else -}}
{{- fail "collector.storers is required when storer.enabled is false" -}}
{{- end -}}
{{- if $c.hepTls.enabled -}}
{{- $_ := set $own "hep_tls_listen" (include "sipcapture.listen" (dict "root" . "port" $c.hepTls.port)) -}}
{{- $_ := set $own "hep_tls_cert" "/etc/sipcapture/hep-tls/tls.crt" -}}
{{- $_ := set $own "hep_tls_key" "/etc/sipcapture/hep-tls/tls.key" -}}
{{- end -}}
{{- $own = mergeOverwrite $own (include "sipcapture.grpcTlsConfig" . | fromYaml) -}}
{{- $own = mergeOverwrite $own (include "sipcapture.grpcLimits" . | fromYaml) -}}
{{- toYaml (mergeOverwrite (deepCopy (default dict $c.config)) $own) -}}
{{- end -}}

{{/*
The collector container, for the DaemonSet and for SBC pods (sidecar). Include it in a pod's
`containers:` list from a chart that depends on this one, in the release's namespace:

  containers:
    - name: sbc
      image: my-sbc
    {{- include "sipcapture.collectorSidecar" (dict "root" $ "name" "hep-collector") | nindent 4 }}
  volumes:
    {{- include "sipcapture.collectorSidecarVolumes" (dict "root" $) | nindent 4 }}

The SBC then sends HEP to 127.0.0.1:<collector.hepPort>. Arguments: root (the top context),
name (container name, default "collector"), hostPorts (publish the HEP ports on the node).
*/}}
{{- define "sipcapture.collectorSidecar" -}}
{{- $root := .root -}}
{{- $c := $root.Values.collector -}}
- name: {{ default "collector" .name }}
  image: {{ include "sipcapture.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  command: ["/usr/local/bin/sipcapture-collector"]
  args: ["--config", "/etc/sipcapture/config/collector.toml"]
  ports:
    - name: hep-udp
      containerPort: {{ $c.hepPort }}
      {{- if .hostPorts }}
      hostPort: {{ $c.hepPort }}
      {{- end }}
      protocol: UDP
    - name: hep-tcp
      containerPort: {{ $c.hepPort }}
      {{- if .hostPorts }}
      hostPort: {{ $c.hepPort }}
      {{- end }}
      protocol: TCP
    {{- if $c.hepTls.enabled }}
    - name: hep-tls
      containerPort: {{ $c.hepTls.port }}
      {{- if .hostPorts }}
      hostPort: {{ $c.hepTls.port }}
      {{- end }}
      protocol: TCP
    {{- end }}
    - name: grpc
      containerPort: {{ $c.grpcPort }}
      protocol: TCP
    {{- if $root.Values.metrics.enabled }}
    - name: metrics
      containerPort: {{ $root.Values.metrics.port }}
      protocol: TCP
    {{- end }}
  {{- $env := include "sipcapture.collectorEnv" $root | trim }}
  {{- if $env }}
  env:
    {{- $env | nindent 4 }}
  {{- end }}
  {{- include "sipcapture.probes" (dict "root" $root "port" $c.grpcPort) | nindent 2 }}
  resources:
    {{- toYaml $c.resources | nindent 4 }}
  securityContext:
    {{- if $c.rawCapture.enabled }}
    {{- $sc := deepCopy $root.Values.containerSecurityContext }}
    {{- $_ := set $sc "runAsUser" 0 }}
    {{- $_ := set $sc "runAsNonRoot" false }}
    {{- $_ := set $sc "capabilities" (dict "drop" (list "ALL") "add" (list "NET_RAW" "NET_ADMIN")) }}
    {{- toYaml $sc | nindent 4 }}
    {{- else }}
    {{- /* Non-root also in SBC pods whose pod securityContext allows root. */}}
    {{- $sc := deepCopy $root.Values.containerSecurityContext }}
    {{- $_ := set $sc "runAsNonRoot" true }}
    {{- $_ := set $sc "runAsUser" (default 65532 $root.Values.podSecurityContext.runAsUser) }}
    {{- toYaml $sc | nindent 4 }}
    {{- end }}
  volumeMounts:
    - name: collector-config
      mountPath: /etc/sipcapture/config
      readOnly: true
    - name: collector-spool
      mountPath: /var/spool/sipcapture
    - name: collector-tmp
      mountPath: /tmp
    {{- if $c.hepTls.enabled }}
    - name: collector-hep-tls
      mountPath: /etc/sipcapture/hep-tls
      readOnly: true
    {{- end }}
    {{- include "sipcapture.grpcTlsMount" (dict "root" $root "name" "collector-grpc-tls") | nindent 4 }}
    {{- with $c.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* The volumes the collector container mounts: (dict "root" $). */}}
{{- define "sipcapture.collectorSidecarVolumes" -}}
{{- $root := .root -}}
{{- $c := $root.Values.collector -}}
- name: collector-config
  configMap:
    name: {{ include "sipcapture.fullname" $root }}-collector
- name: collector-spool
  {{- if $c.spool.hostPath }}
  hostPath:
    path: {{ $c.spool.hostPath }}
    type: Directory
  {{- else }}
  emptyDir:
    sizeLimit: {{ $c.spool.sizeLimit }}
  {{- end }}
- name: collector-tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if $c.hepTls.enabled }}
- name: collector-hep-tls
  secret:
    secretName: {{ include "sipcapture.hepTlsSecretName" $root }}
{{- end }}
{{- include "sipcapture.grpcTlsVolume" (dict "root" $root "name" "collector-grpc-tls") }}
{{- with $c.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
gRPC TLS keys of every service when grpcTls.enabled (docs/SECURITY.md), as YAML to merge into a
service's own keys: its listener serves the Secret's certificate (clients verified against
ca.crt when grpcTls.mutual), its client links trust ca.crt, present the same certificate and
verify servers as grpcTls.serverName.
*/}}
{{- define "sipcapture.grpcTlsConfig" -}}
{{- $t := .Values.grpcTls -}}
{{- if $t.enabled -}}
{{- if not $t.secretName -}}
{{- fail "grpcTls.secretName is required when grpcTls.enabled is true" -}}
{{- end -}}
{{- $dir := "/etc/sipcapture/grpc-tls" -}}
{{- $server := dict "cert" (printf "%s/tls.crt" $dir) "key" (printf "%s/tls.key" $dir) -}}
{{- $client := dict "ca" (printf "%s/ca.crt" $dir) "server_name" $t.serverName -}}
{{- if $t.mutual -}}
{{- $_ := set $server "client_ca" (printf "%s/ca.crt" $dir) -}}
{{- $_ := set $client "cert" (printf "%s/tls.crt" $dir) -}}
{{- $_ := set $client "key" (printf "%s/tls.key" $dir) -}}
{{- end -}}
{{- $out := dict "grpc_tls" $server "grpc_client_tls" $client -}}
{{- if $t.adminIdentities -}}
{{- $_ := set $out "grpc_admin_identities" $t.adminIdentities -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}
{{- end -}}

{{/* The gRPC TLS Secret mount of a sipcapture container: (dict "root" $ "name" volume). */}}
{{- define "sipcapture.grpcTlsMount" -}}
{{- if .root.Values.grpcTls.enabled }}
- name: {{ .name }}
  mountPath: /etc/sipcapture/grpc-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* The gRPC TLS Secret volume: (dict "root" $ "name" volume). */}}
{{- define "sipcapture.grpcTlsVolume" -}}
{{- if .root.Values.grpcTls.enabled }}
- name: {{ .name }}
  secret:
    secretName: {{ .root.Values.grpcTls.secretName }}
{{- end }}
{{- end -}}

{{/* NetworkPolicy peers: the release's pods of some components, plus extra peers:
(dict "name" chart-name "instance" release "components" (list ...) "extra" peers). */}}
{{- define "sipcapture.netpolPeers" -}}
- podSelector:
    matchExpressions:
      - key: app.kubernetes.io/name
        operator: In
        values: [{{ .name | quote }}]
      - key: app.kubernetes.io/instance
        operator: In
        values: [{{ .instance | quote }}]
      - key: app.kubernetes.io/component
        operator: In
        values: {{ toJson .components }}
{{- with .extra }}
{{ toYaml . }}
{{- end -}}
{{- end -}}
