package policy

import (
	"errors"
	"strings"
	"testing"
)

// testOptions are the options of the refusal table: the API user and one
// CPM user besides PasswordManager, as planner run --user and --cpm give
// them.
var testOptions = Options{APIUser: "svc_safeperm", CPMs: []string{"CPM_EU"}}

// TestParseRefusals pins every refusal message, with its position: the
// end-to-end tests and the documentation quote them. Each want line is
// "LINE:COL: message" of file p.yaml; the whole output must match, in
// order, so a problem reported twice or not at all fails too.
func TestParseRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{
			name: "empty file",
			src:  ``,
			want: []string{
				`1:1: the policy file is empty; it needs "version: 1" and "rules"`,
			},
		},
		{
			name: "only comments",
			src: `# nothing here
---
`,
			want: []string{
				`1:1: the policy file is empty; it needs "version: 1" and "rules"`,
			},
		},
		{
			name: "UTF-16",
			src:  "\xff\xfev\x00",
			want: []string{
				`1:1: the file is UTF-16; save it as UTF-8`,
			},
		},
		{
			name: "invalid UTF-8",
			src:  "version: 1\nrules: [caf\xe9]\n",
			want: []string{
				`2:12: invalid UTF-8 (byte 0xE9); save the file as UTF-8`,
			},
		},
		{
			name: "NUL",
			src:  "version: 1\x00\n",
			want: []string{
				`1:11: NUL byte; is the file UTF-16, or not a text file?`,
			},
		},
		{
			name: "syntax: unclosed flow",
			src: `version: 1
rules: [
`,
			want: []string{
				`2:8: YAML syntax error: sequence end token ']' not found`,
			},
		},
		{
			name: "syntax: tab indent",
			src:  "version: 1\nrules:\n\t- name: x\n",
			want: []string{
				"3:1: YAML syntax error: found character '\t' that cannot start any token; indent with spaces, not tabs",
			},
		},
		{
			name: "second document",
			src: `version: 1
rules: []
---
version: 1
`,
			want: []string{
				`2:8: "rules" is empty; a policy needs at least one rule`,
				`4:1: a second YAML document is not allowed; a policy file holds one policy`,
			},
		},
		{
			name: "top is a list",
			src: `- name: x
`,
			want: []string{
				`1:1: the policy must be a mapping with the keys "version" and "rules", got a list`,
			},
		},
		{
			name: "top is a string",
			src: `hello
`,
			want: []string{
				`1:1: the policy must be a mapping with the keys "version" and "rules", got a string`,
			},
		},
		{
			name: "missing version and rules",
			src: `foo: 1
`,
			want: []string{
				`1:1: unknown key "foo"; the keys are version, rules; keys starting with x- are ignored`,
				`1:1: missing "version"; add "version: 1"`,
				`1:1: missing "rules"; add the list of rules`,
			},
		},
		{
			name: "version string",
			src: `version: "1"
rules: []
`,
			want: []string{
				`1:10: "version": want the integer 1, got a string`,
				`2:8: "rules" is empty; a policy needs at least one rule`,
			},
		},
		{
			name: "version 2",
			src: `version: 2
rules: []
`,
			want: []string{
				`1:10: unsupported version 2; this safeperm reads version 1`,
				`2:8: "rules" is empty; a policy needs at least one rule`,
			},
		},
		{
			name: "version float",
			src: `version: 1.0
rules: []
`,
			want: []string{
				`1:10: "version": want the integer 1, got a number`,
				`2:8: "rules" is empty; a policy needs at least one rule`,
			},
		},
		{
			name: "rules empty",
			src: `version: 1
rules: []
`,
			want: []string{
				`2:8: "rules" is empty; a policy needs at least one rule`,
			},
		},
		{
			name: "rules mapping",
			src: `version: 1
rules:
  name: x
`,
			want: []string{
				`3:3: "rules": want a list, got a mapping`,
			},
		},
		{
			name: "rules null",
			src: `version: 1
rules:
`,
			want: []string{
				`2:8: "rules": want a list, got nothing`,
			},
		},
		{
			name: "unknown top keys",
			src: `version: 1
Version: 1
rule: []
description: x
`,
			want: []string{
				`2:1: unknown key "Version"; did you mean "version"?`,
				`3:1: unknown key "rule"; did you mean "rules"?`,
				`4:1: unknown key "description"; the keys are version, rules; keys starting with x- are ignored`,
			},
		},
		{
			name: "duplicate top key",
			src: `version: 1
version: 1
rules: []
`,
			want: []string{
				`2:1: duplicate key "version" (first at line 1)`,
				`3:8: "rules" is empty; a policy needs at least one rule`,
			},
		},
		{
			name: "rule not a mapping",
			src: `version: 1
rules:
  - psm-unlock
`,
			want: []string{
				`3:5: rule 1: want a mapping of keys (name, safes, member, an action...), got a string`,
			},
		},
		{
			name: "rule missing everything",
			src: `version: 1
rules:
  - except: [a]
`,
			want: []string{
				`3:5: missing "name" in rule 1`,
				`3:5: missing "safes" in rule 1; name the Safes it applies to (["*"] for every Safe)`,
				`3:5: missing "member" in rule 1; name the user, group or role it manages`,
				`3:5: rule 1 has no action; give one of grant, revoke, exactly, copyFrom or absent`,
			},
		},
		{
			name: "rule no action",
			src: `version: 1
rules:
  - name: x
    safes: ["*"]
    member: m
`,
			want: []string{
				`3:5: rule "x" has no action; give one of grant, revoke, exactly, copyFrom or absent`,
			},
		},
		{
			name: "rule two actions",
			src: `version: 1
rules:
  - name: x
    safes: ["*"]
    member: m
    grant: [listAccounts]
    revoke: [unlockAccounts]
`,
			want: []string{
				`7:5: rule "x" has two actions, "grant" and "revoke"; give only one`,
			},
		},
		{
			name: "rule three actions",
			src: `version: 1
rules:
  - name: x
    safes: ["*"]
    member: m
    grant: [listAccounts]
    absent: true
    copyFrom: n
`,
			want: []string{
				`7:5: rule "x" has 3 actions, "grant", "absent" and "copyFrom"; give only one`,
			},
		},
		{
			name: "unknown rule keys",
			src: `version: 1
rules:
  - name: x
    safe: ["*"]
    member: m
    Member: m
    permissions: [listAccounts]
    grant: [listAccounts]
    color: blue
`,
			want: []string{
				`4:5: unknown key "safe" in rule "x"; did you mean "safes"?`,
				`6:5: unknown key "Member" in rule "x"; did you mean "member"?`,
				`7:5: unknown key "permissions" in rule "x"; the keys are name, safes, except, managedBy, member, memberType, searchIn, grant, revoke, exactly, copyFrom, removeSource, absent`,
				`9:5: unknown key "color" in rule "x"; the keys are name, safes, except, managedBy, member, memberType, searchIn, grant, revoke, exactly, copyFrom, removeSource, absent`,
			},
		},
		{
			name: "duplicate rule key",
			src: `version: 1
rules:
  - name: x
    safes: ["*"]
    safes: ["a"]
    member: m
    grant: [listAccounts]
`,
			want: []string{
				`5:5: duplicate key "safes" in rule "x" (first at line 4)`,
			},
		},
		{
			name: "safes empty",
			src: `version: 1
rules:
  - name: x
    safes: []
    member: m
    grant: [listAccounts]
`,
			want: []string{
				`4:12: "safes" in rule "x" is empty; name the Safes it applies to (["*"] for every Safe)`,
			},
		},
		{
			name: "safes string",
			src: `version: 1
rules:
  - name: x
    safes: DB-*
    member: m
    grant: [listAccounts]
`,
			want: []string{
				`4:12: "safes" in rule "x": want a list, got a string; write ["DB-*"]`,
			},
		},
		{
			name: "bad patterns",
			src: `version: 1
rules:
  - name: x
    safes: ["", "  ", "a/b", "C:\\x", "a|b", "t\tb", "<x>", 'q"', 2024, true, ~]
    except: ["ok", "x\u0001"]
    member: m
    grant: [listAccounts]
`,
			want: []string{
				`4:13: empty Safe name pattern in "safes" of rule "x"`,
				`4:17: empty Safe name pattern in "safes" of rule "x"`,
				`4:23: Safe name pattern "a/b" in "safes" of rule "x" holds '/', which no Safe name can hold`,
				`4:30: Safe name pattern "C:\x" in "safes" of rule "x" holds ':', which no Safe name can hold`,
				`4:39: Safe name pattern "a|b" in "safes" of rule "x" holds '|', which no Safe name can hold`,
				`4:46: Safe name pattern "t\tb" in "safes" of rule "x" holds a tab, which no Safe name can hold`,
				`4:54: Safe name pattern "<x>" in "safes" of rule "x" holds '<', which no Safe name can hold`,
				`4:61: Safe name pattern "q\"" in "safes" of rule "x" holds '"', which no Safe name can hold`,
				`4:67: item 9 of "safes" in rule "x": want a string, got an integer; quote it: "2024"`,
				`4:73: item 10 of "safes" in rule "x": want a string, got true/false; quote it: "true"`,
				`4:79: item 11 of "safes" in rule "x": want a string, got nothing`,
				`5:20: Safe name pattern "x\x01" in "except" of rule "x" holds control character U+0001, which no Safe name can hold`,
			},
		},
		{
			name: "long pattern",
			src: `version: 1
rules:
  - name: x
    safes: ["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"]
    member: m
    grant: [listAccounts]
`,
			want: []string{
				`4:13: Safe name pattern "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" in "safes" of rule "x" is longer than 256 characters`,
			},
		},
		{
			name: "permissions",
			src: `version: 1
rules:
  - name: x
    safes: ["*"]
    member: m
    grant: [unlockAccount, UnlockAccounts, ListContent, retrieve, view, foo, listAccounts, listAccounts]
`,
			want: []string{
				`6:13: unknown permission "unlockAccount"; did you mean "unlockAccounts"?`,
				`6:28: unknown permission "UnlockAccounts"; did you mean "unlockAccounts"?`,
				`6:44: unknown permission "ListContent"; did you mean "listAccounts"?`,
				`6:57: unknown permission "retrieve"; did you mean "retrieveAccounts"?`,
				`6:67: unknown permission "view"; the permissions are useAccounts, retrieveAccounts, listAccounts, addAccounts, updateAccountContent, updateAccountProperties, initiateCPMAccountManagementOperations, specifyNextAccountContent, renameAccounts, deleteAccounts, unlockAccounts, manageSafe, manageSafeMembers, backupSafe, viewAuditLog, viewSafeMembers, accessWithoutConfirmation, createFolders, deleteFolders, moveAccountsAndFolders, requestsAuthorizationLevel1, requestsAuthorizationLevel2`,
				`6:73: unknown permission "foo"; the permissions are useAccounts, retrieveAccounts, listAccounts, addAccounts, updateAccountContent, updateAccountProperties, initiateCPMAccountManagementOperations, specifyNextAccountContent, renameAccounts, deleteAccounts, unlockAccounts, manageSafe, manageSafeMembers, backupSafe, viewAuditLog, viewSafeMembers, accessWithoutConfirmation, createFolders, deleteFolders, moveAccountsAndFolders, requestsAuthorizationLevel1, requestsAuthorizationLevel2`,
				`6:92: permission "listAccounts" is listed twice in "grant" of rule "x"`,
			},
		},
		{
			name: "permissions string",
			src: `version: 1
rules:
  - name: x
    safes: ["*"]
    member: m
    grant: listAccounts, unlockAccounts
`,
			want: []string{
				`6:12: "grant" in rule "x": want a list, got a string; write [listAccounts, unlockAccounts]`,
			},
		},
		{
			name: "empty permission lists",
			src: `version: 1
rules:
  - name: a
    safes: ["*"]
    member: m
    grant: []
  - name: b
    safes: ["*"]
    member: m
    exactly: []
`,
			want: []string{
				`6:12: "grant" in rule "a" is empty; name at least one permission`,
				`10:14: "exactly" in rule "b" is empty; name at least one permission (to remove the member, write absent: true)`,
			},
		},
		{
			name: "absent false",
			src: `version: 1
rules:
  - name: x
    safes: ["*"]
    member: m
    absent: false
`,
			want: []string{
				`6:13: "absent" in rule "x" must be true; leave it out otherwise`,
			},
		},
		{
			name: "absent string",
			src: `version: 1
rules:
  - name: x
    safes: ["*"]
    member: m
    absent: "yes"
`,
			want: []string{
				`6:13: "absent" in rule "x": want true or false, got a string`,
			},
		},
		{
			name: "removeSource without copyFrom",
			src: `version: 1
rules:
  - name: x
    safes: ["*"]
    member: m
    grant: [listAccounts]
    removeSource: true
`,
			want: []string{
				`7:5: "removeSource" in rule "x" needs "copyFrom"`,
			},
		},
		{
			name: "removeSource not bool",
			src: `version: 1
rules:
  - name: x
    safes: ["*"]
    member: m
    copyFrom: n
    removeSource: "yes"
`,
			want: []string{
				`7:19: "removeSource" in rule "x": want true or false, got a string`,
			},
		},
		{
			name: "copyFrom self",
			src: `version: 1
rules:
  - name: x
    safes: ["*"]
    member: Ops Admins
    copyFrom: ops admins
`,
			want: []string{
				`6:15: copyFrom "ops admins" in rule "x" names the rule's own member`,
			},
		},
		{
			name: "names",
			src: `version: 1
rules:
  - name: Same
    safes: ["*"]
    member: m
    grant: [listAccounts]
  - name: same
    safes: ["*"]
    member: n
    grant: [listAccounts]
  - name: ""
    safes: ["*"]
    member: o
    grant: [listAccounts]
  - name: 12
    safes: ["*"]
    member: p
    grant: [listAccounts]
`,
			want: []string{
				`7:11: duplicate rule name "same" (first at line 3); rule names are compared ignoring case`,
				`11:11: "name" in rule 3 is empty`,
				`15:11: "name" in rule 4: want a string, got an integer; quote it: "12"`,
			},
		},
		{
			name: "member problems",
			src: `version: 1
rules:
  - name: a
    safes: ["*"]
    member: ""
    grant: [listAccounts]
  - name: b
    safes: ["*"]
    member: DOM\ops
    grant: [listAccounts]
  - name: c
    safes: ["*"]
    member: R&D
    memberType: team
    grant: [listAccounts]
  - name: d
    safes: ["*"]
    member: 42
    grant: [listAccounts]
  - name: e
    safes: ["*"]
    member: [a, b]
    grant: [listAccounts]
`,
			want: []string{
				`5:13: "member" in rule "a" is empty`,
				`9:13: member "DOM\ops" in rule "b" holds '\', which the PVWA does not accept in member names`,
				`13:13: member "R&D" in rule "c" holds '&', which the PVWA does not accept in member names`,
				`14:17: memberType "team" in rule "c": want User, Group or Role`,
				`18:13: "member" in rule "d": want a string, got an integer; quote it: "42"`,
				`22:13: "member" in rule "e": want a string, got a list`,
			},
		},
		{
			name: "searchIn empty",
			src: `version: 1
rules:
  - name: x
    safes: ["*"]
    member: m
    searchIn: ""
    grant: [listAccounts]
`,
			want: []string{
				`6:15: "searchIn" in rule "x" is empty; leave it out to search the Vault`,
			},
		},
		{
			name: "reserved members",
			src: `version: 1
rules:
  - name: api
    safes: ["*"]
    member: SVC_SafePerm
    grant: [listAccounts]
  - name: master
    safes: ["*"]
    member: master
    grant: [listAccounts]
  - name: backup
    safes: ["*"]
    member: Backup Users
    absent: true
  - name: cpm
    safes: ["*"]
    member: passwordmanager
    revoke: [listAccounts]
  - name: cpm-flag
    safes: ["*"]
    member: CPM_EU
    revoke: [listAccounts]
  - name: cpm-managedby
    safes: ["*"]
    managedBy: [PasswordManager_Linux]
    member: PasswordManager_linux
    revoke: [listAccounts]
  - name: copy-cpm
    safes: ["*"]
    member: NewOps
    copyFrom: PasswordManager
`,
			want: []string{
				`5:13: member "SVC_SafePerm" in rule "api" is the API user safeperm logs on as; a run must not change its own access`,
				`9:13: member "master" in rule "master" is a built-in Vault user; safeperm does not change built-in users`,
				`13:13: member "Backup Users" in rule "backup" is a built-in Vault user; safeperm does not change built-in users`,
				`17:13: member "passwordmanager" in rule "cpm" is a CPM user; safeperm does not change CPM users`,
				`21:13: member "CPM_EU" in rule "cpm-flag" is a CPM user; safeperm does not change CPM users`,
				`26:13: member "PasswordManager_linux" in rule "cpm-managedby" is a CPM user; safeperm does not change CPM users`,
				`31:15: copyFrom "PasswordManager" in rule "copy-cpm" is a CPM user; safeperm does not change CPM users`,
			},
		},
		{
			name: "managedBy problems",
			src: `version: 1
rules:
  - name: a
    safes: ["*"]
    managedBy: []
    member: m
    grant: [listAccounts]
  - name: b
    safes: ["*"]
    managedBy: ["", "CPM1,CPM2", "C/P"]
    member: n
    grant: [listAccounts]
  - name: c
    safes: ["*"]
    managedBy: PasswordManager
    member: o
    grant: [listAccounts]
`,
			want: []string{
				`5:16: "managedBy" in rule "a" is empty; leave it out to apply the rule whatever the Safe's CPM`,
				`10:17: empty CPM user name in "managedBy" of rule "b"`,
				`10:21: CPM user "CPM1,CPM2" in "managedBy" of rule "b" holds a comma; give one CPM user per item: [CPM1, CPM2]`,
				`10:34: CPM user "C/P" in "managedBy" of rule "b" holds '/', which no user name can hold`,
				`15:16: "managedBy" in rule "c": want a list, got a string; write ["PasswordManager"]`,
			},
		},
		{
			name: "alias unknown",
			src: `version: 1
rules:
  - name: x
    safes: *nope
    member: m
    grant: [listAccounts]
`,
			want: []string{
				`4:12: alias *nope names no anchor (&nope) before it; a Safe name pattern starting with * must be quoted: "*nope"`,
			},
		},
		{
			name: "custom tag",
			src: `version: 1
rules:
  - name: x
    safes: !mine ["*"]
    member: m
    grant: [listAccounts]
`,
			want: []string{
				`4:12: YAML tag !mine is not supported`,
			},
		},
		{
			name: "merge of a string",
			src: `version: 1
rules:
  - name: x
    <<: just-a-string
    safes: ["*"]
    member: m
    grant: [listAccounts]
`,
			want: []string{
				`4:9: "<<" merges a mapping or a list of mappings, got a string`,
			},
		},
		{
			name: "unquoted star",
			src: `version: 1
rules:
  - name: a
    safes: [*]
    member: m
    absent: true
`,
			want: []string{
				`4:14: YAML syntax error: unexpected scalar value type; a Safe name pattern starting with * must be quoted: "*"`,
			},
		},
		{
			name: "unquoted star pattern",
			src: `version: 1
rules:
  - name: a
    safes:
      - *-test
    member: m
    absent: true
`,
			want: []string{
				`5:9: alias *-test names no anchor (&-test) before it; a Safe name pattern starting with * must be quoted: "*-test"`,
			},
		},
		{
			name: "multi-line string for a list",
			src:  "version: 1\nrules:\n  - name: a\n    safes: DB\n      Prod\n    member: m\n    grant: \"list\\nAccounts\"\n",
			want: []string{
				`4:12: "safes" in rule "a": want a list, got a string; write ["DB Prod"]`,
				`7:12: "grant" in rule "a": want a list, got a string`,
			},
		},
		{
			name: "misspelt action",
			src: `version: 1
rules:
  - name: 'a\b'
    safes: ["*"]
    member: m
    grnat: [listAccounts]
`,
			want: []string{
				`6:5: unknown key "grnat" in rule "a\b"; did you mean "grant"?`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Parse([]byte(tt.src), "p.yaml", testOptions)
			if err == nil {
				t.Fatalf("Parse accepted the policy (%d rules)", len(p.Rules))
			}
			if p != nil {
				t.Errorf("Parse returned a policy with its error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %T", err)
			}
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = "p.yaml:" + w
			}
			if got := err.Error(); got != strings.Join(want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
			}
			var es Errors
			if !errors.As(err, &es) || len(es) != len(want) {
				t.Errorf("errors.As(Errors) gives %d problems, want %d", len(es), len(want))
			}
		})
	}
}
