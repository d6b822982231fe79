package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safeperm/safeperm/internal/cliconf"
)

// plannerPolicy runs `planner policy ...` in-process with the given
// environment and returns the exit code, stdout, and stderr plus the
// returned error (as main would print it).
func plannerPolicy(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append([]string{"policy"}, args...), func(k string) string { return env[k] }, &stdout, &stderr)
	errOut := stderr.String()
	if err != nil && !isSilent(err) {
		errOut += "planner: " + err.Error() + "\n"
	}
	return cliconf.ExitCode(err), stdout.String(), errOut
}

func writePolicy(t *testing.T, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const issuePolicy = "../../internal/policy/testdata/valid/issue12.yaml"

func TestPolicyCheckValid(t *testing.T) {
	t.Parallel()
	code, out, errOut := plannerPolicy(t, nil, "check", issuePolicy, "--user", "svc_safeperm", "--cpm", "CPM_EU")
	if code != cliconf.ExitOK || errOut != "" {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	for _, want := range []string{
		issuePolicy + ": version 1, 6 rules\n",
		"rule \"auditors-read-db\" (" + issuePolicy + ":8:5)\n" +
			"  safes:      \"DB-*\", \"db.*\"\n" +
			"  except:     \"db.test.*\"\n" +
			"  managedBy:  any CPM\n" +
			"  member:     \"Security Auditors\" (Group, searchIn Vault)\n" +
			"  action:     grant listAccounts, viewAuditLog, viewSafeMembers (other flags and the expiry kept; the member is added where absent)\n" +
			"  removes:    no\n",
		"  managedBy:  \"PasswordManager_Linux\"\n",
		"  action:     copyFrom \"Domain Ops Admins\" (its flags and expiry; nothing where it is not a member), then remove \"Domain Ops Admins\"\n  removes:    yes (planner run needs --allow-removals)\n",
		"  member:     \"jdoe\" (User, searchIn Vault)\n  action:     absent (the member is removed where present)\n",
		"rules that remove members: \"domain-move\", \"offboard-jdoe\"; planner run refuses them without --allow-removals\n",
		"no proven conflicts\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks\n%s\nstdout:\n%s", want, out)
		}
	}
}

func TestPolicyCheckRefused(t *testing.T) {
	t.Parallel()
	path := writePolicy(t, `version: 1
rules:
  - name: psm
    safe: ["*"]
    member: svc_safeperm
    grant: [unlockAccount]
`)
	code, out, errOut := plannerPolicy(t, map[string]string{"SAFEPERM_USER": "SVC_SafePerm"}, "check", path)
	want := path + `:4:5: unknown key "safe" in rule "psm"; did you mean "safes"?` + "\n" +
		path + `:5:13: member "svc_safeperm" in rule "psm" is the API user safeperm logs on as; a run must not change its own access` + "\n" +
		path + `:6:13: unknown permission "unlockAccount"; did you mean "unlockAccounts"?` + "\n" +
		"planner: " + path + ": 3 problems; the policy is refused\n"
	if code != cliconf.ExitUsage || errOut != want || out != "" {
		t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 and stderr:\n%s", code, out, errOut, want)
	}
}

func TestPolicyCheckConflict(t *testing.T) {
	t.Parallel()
	path := writePolicy(t, `version: 1
rules:
  - name: psm
    safes: ["*"]
    member: PSMAppUsers
    grant: [listAccounts, unlockAccounts]
  - name: no-unlock-linux
    safes: ["Linux*"]
    member: PSMAppUsers
    revoke: [unlockAccounts]
`)
	code, out, errOut := plannerPolicy(t, nil, "check", path)
	conflict := `conflict: rules "psm" (` + path + `:3:5) and "no-unlock-linux" (` + path + `:7:5) set unlockAccounts of PSMAppUsers differently on Safes such as "Linux"` + "\n"
	if code != cliconf.ExitUsage || !strings.Contains(out, conflict) ||
		errOut != "planner: "+path+": 1 proven conflict; planner run would report every Safe where both rules apply as failed\n" {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "1 proven conflict: a run reports every Safe where both rules of a conflict apply as failed") {
		t.Errorf("stdout does not explain the exit:\n%s", out)
	}
}

func TestPolicyCheckJSON(t *testing.T) {
	t.Parallel()
	code, out, errOut := plannerPolicy(t, nil, "check", "--json", issuePolicy)
	if code != cliconf.ExitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	var got checkJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if !got.Valid || len(got.Rules) != 6 || got.Rules[3].Name != "linux-exact" || got.Rules[3].ManagedBy[0] != "PasswordManager_Linux" ||
		!got.Rules[4].Removes || got.Rules[4].Source != "Domain Ops Admins" || strings.Join(got.Removals, ",") != "domain-move,offboard-jdoe" {
		t.Errorf("JSON: %+v", got)
	}

	bad := writePolicy(t, "version: 2\nrules: []\n")
	code, out, _ = plannerPolicy(t, nil, "check", "--json", bad)
	var refused checkJSON
	if err := json.Unmarshal([]byte(out), &refused); err != nil || code != cliconf.ExitUsage {
		t.Fatalf("exit %d, stdout %s (%v)", code, out, err)
	}
	if refused.Valid || len(refused.Problems) != 2 || refused.Problems[0] != (problemJSON{File: bad, Line: 1, Column: 10,
		Message: "unsupported version 2; this safeperm reads version 1"}) {
		t.Errorf("problems: %+v", refused.Problems)
	}
}

func TestPolicyUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args    []string
		code    int
		wantErr string
	}{
		{nil, cliconf.ExitUsage, "planner: no policy command given\n"},
		{[]string{"lint"}, cliconf.ExitUsage, "planner: unknown policy command \"lint\"\n"},
		{[]string{"check"}, cliconf.ExitUsage, "planner: want one policy file: planner policy check FILE\n"},
		{[]string{"check", "a.yaml", "b.yaml"}, cliconf.ExitUsage, "planner: want one policy file: planner policy check FILE\n"},
		{[]string{"check", "/nonexistent/p.yaml"}, cliconf.ExitUsage,
			"/nonexistent/p.yaml: cannot read the policy file: no such file or directory\nplanner: /nonexistent/p.yaml: 1 problem; the policy is refused\n"},
		{[]string{"help"}, cliconf.ExitOK, ""},
	}
	for _, tt := range tests {
		code, _, errOut := plannerPolicy(t, nil, tt.args...)
		if code != tt.code || !strings.HasSuffix(errOut, tt.wantErr) {
			t.Errorf("planner policy %q: exit %d, stderr:\n%s\nwant exit %d ending in %q", tt.args, code, errOut, tt.code, tt.wantErr)
		}
	}
}
