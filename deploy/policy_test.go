package deploy_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/safeperm/safeperm/internal/policy"
)

// TestShippedPolicies: the policy files the drift CronJob and the drift
// timer apply load without a problem, and are the same policy.
func TestShippedPolicies(t *testing.T) {
	root := repoRoot(t)
	unit, err := policy.Load(filepath.Join(root, "deploy/systemd/policy.yaml"), policy.Options{APIUser: "svc-safeperm"})
	if err != nil {
		t.Fatalf("deploy/systemd/policy.yaml: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "deploy/kubernetes/configmap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, doc := range bytes.Split(raw, []byte("\n---\n")) {
		var cm corev1.ConfigMap
		if err := yaml.Unmarshal(doc, &cm); err != nil || cm.Name != "safeperm-policy" {
			continue
		}
		found = true
		kube, err := policy.Parse([]byte(cm.Data["policy.yaml"]), "ConfigMap safeperm-policy policy.yaml", policy.Options{APIUser: "svc-safeperm"})
		if err != nil {
			t.Fatal(err)
		}
		if kube.Digest() != unit.Digest() {
			t.Error("the CronJob's policy and the timer's differ")
		}
	}
	if !found {
		t.Fatal("no ConfigMap safeperm-policy in deploy/kubernetes/configmap.yaml")
	}
}
