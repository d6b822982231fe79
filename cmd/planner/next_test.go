package main

import (
	"testing"
	"time"

	"github.com/safeperm/safeperm/internal/cliconf"
	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/watch"
)

func TestNextSteps(t *testing.T) {
	t.Parallel()
	pvwa := pvwaArgs(cliconf.PVWA{URL: " https://u:p@pvwa.example.com/PasswordVault?x=1#f ", Auth: "LDAP", User: "svc safeperm",
		PasswordFile: "/run/creds/pvwa", Timeout: 30 * time.Second})
	apply := jobs.Run{ID: "r1", Mode: jobs.ModeApply, Params: jobs.RunParams{PVWAFlags: pvwa}}
	tests := []struct {
		name  string
		run   jobs.Run
		where []string
		file  string
		want  watch.NextSteps
	}{
		{"embedded, default data dir", apply, natsArgs(cliconf.NATS{}, defaultDataDir), "out.csv", watch.NextSteps{
			ReportFile: "out.csv",
			Report:     "planner report r1 --format csv",
			Watch:      "planner watch r1",
			Rollback:   "planner rollback r1 --pvwa-url https://pvwa.example.com/PasswordVault --auth ldap --user 'svc safeperm' --password-file /run/creds/pvwa",
		}},
		{"a run recorded with its PVWA host only", jobs.Run{ID: "r0", Mode: jobs.ModeApply, Params: jobs.RunParams{PVWAHost: "pvwa.example.com"}}, nil, "", watch.NextSteps{
			Report:   "planner report r0 --format csv",
			Watch:    "planner watch r0",
			Rollback: "planner rollback r0 --pvwa-url https://pvwa.example.com",
		}},
		{"embedded, other data dir", jobs.Run{ID: "r2", Mode: jobs.ModeCheck}, natsArgs(cliconf.NATS{}, "/var/lib/it's here"), "", watch.NextSteps{
			Report: `planner report r2 --format csv --data-dir '/var/lib/it'\''s here'`,
			Watch:  `planner watch r2 --data-dir '/var/lib/it'\''s here'`,
		}},
		{"external NATS with credentials files", jobs.Run{ID: "r3", Mode: jobs.ModeRollback},
			natsArgs(cliconf.NATS{URL: "tls://n1:4222,tls://n2:4222", User: "planner", PasswordFile: "/etc/p", CAFile: "/etc/ca.pem"}, "ignored"), "", watch.NextSteps{
				Report: "planner report r3 --format csv --nats-url tls://n1:4222,tls://n2:4222 --nats-user planner --nats-password-file /etc/p --nats-ca-file /etc/ca.pem",
				Watch:  "planner watch r3 --nats-url tls://n1:4222,tls://n2:4222 --nats-user planner --nats-password-file /etc/p --nats-ca-file /etc/ca.pem",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextSteps(tt.run, tt.where, tt.file); got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestJSONLogs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{[]string{"run"}, nil, false},
		{[]string{"run", "--json"}, nil, true},
		{[]string{"run", "--json=false"}, nil, false},
		{[]string{"run", "--json", "--log-format", "console"}, nil, false},
		{[]string{"run", "--log-format=json"}, nil, true},
		{[]string{"report", "r1", "--format", "json"}, nil, true},
		{[]string{"run"}, map[string]string{"SAFEPERM_JSON": "true"}, true},
		{[]string{"run", "--", "--json"}, nil, false},
	}
	for _, tt := range tests {
		if got := jsonLogs(tt.args, func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("jsonLogs(%q, %v) = %v, want %v", tt.args, tt.env, got, tt.want)
		}
	}
}
