package report_test

import (
	"log"
	"os"
	"time"

	"github.com/safeperm/safeperm/internal/jobs"
	"github.com/safeperm/safeperm/internal/pam"
	"github.com/safeperm/safeperm/internal/report"
)

func ExampleWriter() {
	format, err := report.FormatFromPath("audit.csv")
	if err != nil {
		log.Fatal(err)
	}
	w := report.NewWriter(os.Stdout, format)
	r := jobs.Result{
		V: jobs.Version, Run: "20261123T094512Z-3f9a2c", Mode: jobs.ModeApply,
		Safe:   jobs.SafeRef{URLID: "Linux%20Root", Name: "Linux Root"},
		Status: jobs.StatusApplied,
		Members: []jobs.MemberResult{{
			Rule: "psm-unlock", Member: jobs.MemberRef{Name: "PSMAppUsers", Type: "Group"}, Status: jobs.StatusApplied,
			Change: jobs.ChangeUpdate, Before: &jobs.MemberState{Permissions: pam.Perms(pam.ListAccounts)},
			After: &jobs.MemberState{Permissions: pam.Perms(pam.ListAccounts, pam.UnlockAccounts)}, Added: pam.Perms(pam.UnlockAccounts),
		}},
		Attempts: 1, Worker: "worker-7f9c/4121",
		Time: time.Date(2026, 11, 23, 9, 46, 3, 0, time.UTC),
	}
	if err := w.Write(r); err != nil {
		log.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// run,mode,safe,safeUrlId,rule,member,memberType,status,change,permissionsBefore,permissionsAfter,expirationBefore,expirationAfter,added,removed,errorCode,error,reason,attempts,worker,time
	// 20261123T094512Z-3f9a2c,apply,Linux Root,Linux%20Root,psm-unlock,PSMAppUsers,Group,applied,update,listAccounts,listAccounts unlockAccounts,,,unlockAccounts,,,,,1,worker-7f9c/4121,2026-11-23T09:46:03Z
}
