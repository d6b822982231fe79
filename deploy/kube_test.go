package deploy_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const (
	kubeNamespace = "safeperm"
	kubeImage     = "ghcr.io/safeperm/safeperm"
)

// kubeKinds are the object types the manifests may contain, decoded into the real API types.
var kubeKinds = map[string]func() any{
	"v1/Namespace":                       func() any { return &corev1.Namespace{} },
	"v1/ConfigMap":                       func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                          func() any { return &corev1.Secret{} },
	"v1/ServiceAccount":                  func() any { return &corev1.ServiceAccount{} },
	"v1/Service":                         func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                 func() any { return &appsv1.Deployment{} },
	"batch/v1/Job":                       func() any { return &batchv1.Job{} },
	"batch/v1/CronJob":                   func() any { return &batchv1.CronJob{} },
	"networking.k8s.io/v1/NetworkPolicy": func() any { return &networkingv1.NetworkPolicy{} },
	"policy/v1/PodDisruptionBudget":      func() any { return &policyv1.PodDisruptionBudget{} },
}

// Manifests deliberately left out of kustomization.yaml.
var notInKustomization = map[string]string{
	"secret.example.yaml": "placeholders; real Secrets are created out of band",
	"planner-job.yaml":    "one-off, created with kubectl create",
}

// kustomization is the subset of kustomize's Kustomization the manifests use; decoding it
// strictly rejects any other field.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
		IncludeTemplates bool              `json:"includeTemplates,omitempty"`
	} `json:"labels,omitempty"`
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

// kubeObject is one decoded document.
type kubeObject struct {
	where string // file#index kind/name
	obj   any
}

// splitYAML splits a multi-document file, dropping documents with nothing but comments.
func splitYAML(b []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		for _, line := range strings.Split(cur.String(), "\n") {
			if s := strings.TrimSpace(line); s != "" && !strings.HasPrefix(s, "#") {
				docs = append(docs, slices.Clone(cur.Bytes()))
				break
			}
		}
		cur.Reset()
	}
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if strings.TrimRight(line, " \t\r\n") == "---" {
			flush()
			continue
		}
		cur.WriteString(line)
	}
	flush()
	return docs
}

// validateKubernetes decodes every manifest strictly and checks the invariants the workloads
// depend on, and every command line and variable against c.
func validateKubernetes(t *testing.T, root string, c *cli) []error {
	dir := filepath.Join(root, "deploy", "kubernetes")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return []error{fmt.Errorf("deploy/kubernetes: no manifests (%v)", err)}
	}
	var errs []error
	k, kerrs := checkKustomization(dir, files)
	errs = append(errs, kerrs...)

	var objs []kubeObject
	for _, f := range files {
		base := filepath.Base(f)
		if base == "kustomization.yaml" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, scanEnvNames("deploy/kubernetes/"+base, string(b), c)...)
		for i, doc := range splitYAML(b) {
			where := fmt.Sprintf("deploy/kubernetes/%s#%d", base, i+1)
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				continue
			}
			gvk := tm.APIVersion + "/" + tm.Kind
			newObj, ok := kubeKinds[gvk]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: unknown kind %s (known: %s)", where, gvk, strings.Join(sortedKeys(kubeKinds), ", ")))
				continue
			}
			obj := newObj()
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", where, gvk, err))
				continue
			}
			meta := obj.(metav1.Object)
			where = fmt.Sprintf("%s %s/%s", where, tm.Kind, meta.GetName())
			if ns := meta.GetNamespace(); ns != "" && ns != kubeNamespace {
				errs = append(errs, fmt.Errorf("%s: namespace %q, want %q or none", where, ns, kubeNamespace))
			}
			if meta.GetName() == "" && meta.GetGenerateName() == "" {
				errs = append(errs, fmt.Errorf("%s: no name", where))
			}
			objs = append(objs, kubeObject{where: where, obj: obj})
		}
	}

	configMaps := map[string]*corev1.ConfigMap{}
	secrets := map[string]*corev1.Secret{}
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *corev1.ConfigMap:
			configMaps[v.Name] = v
			errs = append(errs, checkConfigMap(o.where, v)...)
		case *corev1.Secret:
			secrets[v.Name] = v
		}
	}
	tag := ""
	if k != nil {
		for _, img := range k.Images {
			if img.Name == kubeImage {
				tag = img.NewTag
			}
		}
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[fmt.Sprintf("%T", o.obj)]++
		var pod *corev1.PodSpec
		var role string
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			pod, role = &v.Spec.Template.Spec, "deployment"
		case *batchv1.Job:
			pod, role = &v.Spec.Template.Spec, "job"
		case *batchv1.CronJob:
			pod, role = &v.Spec.JobTemplate.Spec.Template.Spec, "job"
			if v.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
				errs = append(errs, fmt.Errorf("%s: concurrencyPolicy must be Forbid (two drift runs at once would compete), got %q", o.where, v.Spec.ConcurrencyPolicy))
			}
		default:
			continue
		}
		errs = append(errs, checkPod(o.where, role, pod, tag, configMaps, secrets, c)...)
	}
	for _, want := range []string{"*v1.Deployment", "*v1.CronJob", "*v1.Job", "*v1.ConfigMap", "*v1.Secret", "*v1.ServiceAccount"} {
		if kinds[want] == 0 {
			errs = append(errs, fmt.Errorf("deploy/kubernetes: no %s", strings.TrimPrefix(want, "*v1.")))
		}
	}
	return errs
}

// checkKustomization decodes kustomization.yaml strictly and checks it lists every manifest.
func checkKustomization(dir string, files []string) (*kustomization, []error) {
	const where = "deploy/kubernetes/kustomization.yaml"
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, []error{err}
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		return nil, []error{fmt.Errorf("%s: %w", where, err)}
	}
	var errs []error
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		errs = append(errs, fmt.Errorf("%s: apiVersion/kind %s/%s", where, k.APIVersion, k.Kind))
	}
	if k.Namespace != kubeNamespace {
		errs = append(errs, fmt.Errorf("%s: namespace %q, want %q", where, k.Namespace, kubeNamespace))
	}
	listed := map[string]bool{}
	for _, r := range k.Resources {
		listed[r] = true
		if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
			errs = append(errs, fmt.Errorf("%s: resource %s: %w", where, r, err))
		}
		if _, ok := notInKustomization[r]; ok {
			errs = append(errs, fmt.Errorf("%s: %s must not be applied: %s", where, r, notInKustomization[r]))
		}
	}
	for _, f := range files {
		base := filepath.Base(f)
		if base == "kustomization.yaml" || listed[base] {
			continue
		}
		if _, ok := notInKustomization[base]; !ok {
			errs = append(errs, fmt.Errorf("%s: %s is not listed in resources", where, base))
		}
	}
	found := false
	for _, img := range k.Images {
		if img.Name == kubeImage {
			found = true
			if img.NewTag == "" && img.Digest == "" {
				errs = append(errs, fmt.Errorf("%s: image %s has no newTag", where, kubeImage))
			}
		}
	}
	if !found {
		errs = append(errs, fmt.Errorf("%s: no images entry for %s", where, kubeImage))
	}
	return &k, errs
}

// secretName matches variable names that hold a secret value (a *_FILE variable holds a path).
var secretName = regexp.MustCompile(`(?i)(PASSWORD|SECRET|TOKEN|PASSWD)$`)

func isSecretVar(name string) bool {
	return slices.Contains(secretEnv, name) || secretName.MatchString(name)
}

func checkConfigMap(where string, cm *corev1.ConfigMap) []error {
	var errs []error
	for _, key := range sortedKeys(cm.Data) {
		if isSecretVar(key) {
			errs = append(errs, fmt.Errorf("%s: secret %s in ConfigMap %s: use a Secret", where, key, cm.Name))
		}
	}
	return errs
}

// checkPod checks a workload's pod spec and each container's command line and environment.
func checkPod(where, role string, pod *corev1.PodSpec, tag string, cms map[string]*corev1.ConfigMap, secrets map[string]*corev1.Secret, c *cli) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(where+": "+format, args...)) }

	podNonRoot := pod.SecurityContext != nil && pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot
	if pod.SecurityContext != nil && pod.SecurityContext.RunAsUser != nil && *pod.SecurityContext.RunAsUser == 0 {
		bad("pod runAsUser 0")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		bad("automountServiceAccountToken must be false (safeperm does not call the Kubernetes API)")
	}
	if role == "job" && pod.RestartPolicy != corev1.RestartPolicyNever && pod.RestartPolicy != corev1.RestartPolicyOnFailure {
		bad("restartPolicy %q, want Never or OnFailure", pod.RestartPolicy)
	}
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil && cms[v.ConfigMap.Name] == nil {
			bad("volume %s uses ConfigMap %s, which is not defined", v.Name, v.ConfigMap.Name)
		}
		if v.Secret != nil && secrets[v.Secret.SecretName] == nil {
			bad("volume %s uses Secret %s, not in secret.example.yaml", v.Name, v.Secret.SecretName)
		}
	}
	if len(pod.InitContainers) > 0 {
		bad("init containers are not expected")
	}
	for i := range pod.Containers {
		ct := &pod.Containers[i]
		cw := fmt.Sprintf("container %s", ct.Name)
		sc := ct.SecurityContext
		if !podNonRoot && (sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) {
			bad("%s: runAsNonRoot must be true (pod or container)", cw)
		}
		if sc != nil && sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot {
			bad("%s: runAsNonRoot false", cw)
		}
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			bad("%s: readOnlyRootFilesystem must be true", cw)
		}
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			bad("%s: allowPrivilegeEscalation must be false", cw)
		}
		if want := kubeImage + ":" + tag; ct.Image != want {
			bad("%s: image %q, want %q (the tag kustomization.yaml sets)", cw, ct.Image, want)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := ct.Resources.Requests[r]; !ok {
				bad("%s: no %s request", cw, r)
			}
		}
		if _, ok := ct.Resources.Limits[corev1.ResourceMemory]; !ok {
			bad("%s: no memory limit", cw)
		}

		// The command line.
		if len(ct.Command) == 0 {
			bad("%s: command not set (the image holds both binaries)", cw)
			continue
		}
		argv := append(slices.Clone(ct.Command), ct.Args...)
		if argv[0] != plannerPath && argv[0] != workerPath {
			bad("%s: command %q, want %s or %s", cw, argv[0], plannerPath, workerPath)
			continue
		}
		fs, ferrs := c.checkArgv(argv)
		errs = append(errs, wrap(where+": "+cw, ferrs...)...)
		if fs == nil {
			continue
		}
		for _, a := range argv {
			name := strings.TrimLeft(strings.SplitN(a, "=", 2)[0], "-")
			if strings.HasPrefix(a, "-") && slices.Contains(secretEnv, envName(name)) {
				bad("%s: secret on the command line: %s", cw, a)
			}
		}

		// The environment: envFrom ConfigMaps, then env (which wins).
		env := map[string]string{}
		for _, ef := range ct.EnvFrom {
			switch {
			case ef.Prefix != "":
				bad("%s: envFrom prefix %q would rename the SAFEPERM_* variables", cw, ef.Prefix)
			case ef.ConfigMapRef != nil:
				cm := cms[ef.ConfigMapRef.Name]
				if cm == nil {
					bad("%s: envFrom ConfigMap %s is not defined", cw, ef.ConfigMapRef.Name)
					continue
				}
				for k, v := range cm.Data {
					env[k] = v
				}
			case ef.SecretRef != nil:
				if secrets[ef.SecretRef.Name] == nil {
					bad("%s: envFrom Secret %s is not in secret.example.yaml", cw, ef.SecretRef.Name)
				}
			}
		}
		for _, e := range ct.Env {
			switch {
			case isSecretVar(e.Name) && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil):
				bad("%s: %s must come from a secretKeyRef, not a plain value", cw, e.Name)
			case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
				ref := e.ValueFrom.SecretKeyRef
				s := secrets[ref.Name]
				if s == nil {
					bad("%s: %s: Secret %s is not in secret.example.yaml", cw, e.Name, ref.Name)
				} else if _, ok := s.StringData[ref.Key]; !ok {
					if _, ok := s.Data[ref.Key]; !ok {
						bad("%s: %s: Secret %s has no key %s", cw, e.Name, ref.Name, ref.Key)
					}
				}
			}
			env[e.Name] = e.Value
		}
		for _, name := range sortedKeys(env) {
			if !strings.HasPrefix(name, "SAFEPERM_") {
				continue
			}
			if err := checkEnv(fs, name, env[name]); err != nil {
				bad("%s: %v", cw, err)
			}
			if v := env[name]; (strings.HasSuffix(name, "_FILE") || strings.HasPrefix(v, "/etc/safeperm/")) && strings.HasPrefix(v, "/") && !mounted(ct, v) {
				bad("%s: %s=%s is not on a volume mount", cw, name, v)
			}
		}

		// What each binary needs from its pod.
		flags := flagValues(fs, argv)
		setting := func(flag string) string {
			if v, ok := flags[flag]; ok {
				return v
			}
			return env[envName(flag)]
		}
		switch argv[0] {
		case workerPath:
			errs = append(errs, wrap(where+": "+cw, checkWorkerPod(pod, ct, setting("metrics-addr"), setting("shutdown-timeout"))...)...)
		case plannerPath:
			if role != "job" {
				bad("%s: the planner runs as a Job or CronJob", cw)
			}
			if argv[1] != "run" {
				bad("%s: planner %s in a Job; want planner run", cw, argv[1])
			}
			if _, ok := flags["watch"]; !ok || flags["watch"] == "false" {
				bad("%s: planner run needs --watch so the Job's exit code is the run's", cw)
			}
			if m := setting("mode"); m != "apply" && m != "check" {
				bad("%s: planner run --mode %q, want apply or check", cw, m)
			}
		}
	}
	return errs
}

// checkWorkerPod checks the probes, metrics port and shutdown budget of a worker container.
func checkWorkerPod(pod *corev1.PodSpec, ct *corev1.Container, metricsAddr, shutdownTimeout string) []error {
	var errs []error
	_, portStr, err := net.SplitHostPort(metricsAddr)
	port, perr := strconv.Atoi(portStr)
	if err != nil || perr != nil {
		errs = append(errs, fmt.Errorf("--metrics-addr %q (flag or SAFEPERM_METRICS_ADDR) must be set to host:port", metricsAddr))
	}
	probe := func(kind, path string, p *corev1.Probe) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path {
			errs = append(errs, fmt.Errorf("%s probe must GET %s", kind, path))
			return
		}
		if got := resolvePort(ct, p.HTTPGet.Port); got != port {
			errs = append(errs, fmt.Errorf("%s probe port %s is %d, not the --metrics-addr port %d", kind, p.HTTPGet.Port.String(), got, port))
		}
	}
	probe("liveness", "/healthz", ct.LivenessProbe)
	probe("readiness", "/readyz", ct.ReadinessProbe)
	exposed := false
	for _, p := range ct.Ports {
		exposed = exposed || int(p.ContainerPort) == port
	}
	if !exposed {
		errs = append(errs, fmt.Errorf("metrics port %d is not a containerPort", port))
	}
	d, err := time.ParseDuration(shutdownTimeout)
	if err != nil {
		errs = append(errs, fmt.Errorf("--shutdown-timeout %q (flag or SAFEPERM_SHUTDOWN_TIMEOUT) must be set explicitly: %v", shutdownTimeout, err))
	}
	grace := 30 * time.Second // the Kubernetes default
	if pod.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}
	if err == nil && grace <= d {
		errs = append(errs, fmt.Errorf("terminationGracePeriodSeconds (%v) must exceed the worker's --shutdown-timeout (%v), or in-flight jobs are killed", grace, d))
	}
	return errs
}

func resolvePort(ct *corev1.Container, p intstr.IntOrString) int {
	if p.Type == intstr.Int {
		return p.IntValue()
	}
	for _, cp := range ct.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort)
		}
	}
	return -1
}

func mounted(ct *corev1.Container, path string) bool {
	for _, m := range ct.VolumeMounts {
		if path == m.MountPath || strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return true
		}
	}
	return false
}

// flagValues returns the flags an argv sets ("" for a bare bool means true).
func flagValues(fs *flagSet, argv []string) map[string]string {
	_, args, _, _ := (&cli{worker: fs, planner: map[string]*flagSet{argvSub(argv): fs}}).command(argv)
	out := map[string]string{}
	for i := 0; i < len(args); i++ {
		name, value, has := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "-") {
			break
		}
		if fs.flags[name] == "bool" {
			if !has {
				value = "true"
			}
		} else if !has && i+1 < len(args) {
			i++
			value = args[i]
		}
		out[name] = value
	}
	return out
}

func argvSub(argv []string) string {
	if len(argv) > 1 {
		return argv[1]
	}
	return ""
}
