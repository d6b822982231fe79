// Package report writes the report of a run for auditors: one row per Safe
// and member the run's rules concern (one row for a Safe without member
// entries, e.g. skipped by the planner), as CSV or as JSON Lines, from the
// run's Results (see jobs.Replay and jobs.Follow, which give one Result per
// Safe).
//
// The format is chosen from the output file's extension (FormatFromPath:
// ".csv" is CSV; ".jsonl", ".ndjson" and ".json" are JSON Lines) or from a
// --format flag (ParseFormat: "csv" or "json").
//
// # Columns and fields
//
// Both formats carry the same fields, in this order, with these names (the
// CSV header row and the JSON keys are identical):
//
//	field              meaning
//	run                run id
//	mode               apply | check | rollback
//	safe               Safe name
//	safeUrlId          PVWA safeUrlId
//	rule               the rule(s) concerning the member, comma-separated ("" on a Safe row)
//	member             member name
//	memberType         User, Group or Role (as the rule or the PVWA gave it)
//	status             the member's outcome (the Safe's on a Safe row):
//	                   applied | unchanged | drift | skipped | failed | conflict
//	change             add | update | remove: what was (check: would be) done; "" for nothing
//	permissionsBefore  the member's flags before any write
//	permissionsAfter   the member's flags after the write (applied), as they
//	                   would be (drift), or as read
//	expirationBefore   membership expiration before, RFC 3339 UTC
//	expirationAfter    membership expiration after, RFC 3339 UTC
//	added              flags set (drift: that would be set)
//	removed            flags cleared (drift: that would be cleared)
//	errorCode          failed/conflict: stable code, e.g. MAX_DELIVERIES, POLICY_CONFLICT
//	error              failed/conflict: message
//	reason             skipped or left alone: why
//	attempts           deliveries of the job when it finished (0: unknown)
//	worker             process that produced the result
//	time               when the result was produced, RFC 3339 UTC
//
// Flag names are the Gen2 permission names in canonical order (the PVWA's
// order, as in pam.PermissionNames).
//
// # CSV
//
// A header row, then one row per Safe and member, quoted as RFC 4180 says
// (encoding/csv, LF line ends). Lists are space-separated
// ("listAccounts unlockAccounts"). A member state that is absent (not a
// member of the Safe, or not read, e.g. a failed or skipped Safe) is
// written "-" in permissionsBefore/permissionsAfter, so it cannot be
// confused with a member that holds no flag (""). An expiration is empty
// when the membership does not expire or the state is absent.
//
// Safe names, member names, messages and every other cell taken from the
// vault or a worker are attacker-influenced, so a cell that starts with
// '=', '+', '-', '@', a tab or a carriage return gets a leading single quote
// (the OWASP "CSV injection" defence): a spreadsheet then shows it as text
// instead of evaluating it. Cells safeperm generates itself (status, mode,
// flag lists, "-", times, attempts) are never altered. A program reading
// the CSV back should drop a leading "'" followed by one of those
// characters. No byte-order mark is written; to open the file in Excel with
// non-ASCII names intact, import it as UTF-8.
//
// # JSON Lines
//
// One JSON object per line (UTF-8, no HTML escaping), with every field
// always present:
//
//	{"run":"20261123T094512Z-3f9a2c","mode":"apply","safe":"Linux Root",
//	 "safeUrlId":"Linux%20Root","rule":"psm-unlock","member":"PSMAppUsers",
//	 "memberType":"Group","status":"applied","change":"add",
//	 "permissionsBefore":null,"permissionsAfter":["listAccounts","unlockAccounts"],
//	 "expirationBefore":null,"expirationAfter":null,
//	 "added":["listAccounts","unlockAccounts"],"removed":[],
//	 "errorCode":"","error":"","reason":"","attempts":1,
//	 "worker":"worker-7f9c/4121","time":"2026-11-23T09:46:03.12Z"}
//
// permissionsBefore/permissionsAfter are a list of flag names, or null when
// the state is absent (not a member, or not read); [] is a member without
// flags. expirationBefore/expirationAfter are RFC 3339 strings or null.
// added and removed are lists ([] when empty). time is "" when the result
// carried none. Values are written verbatim: no injection guard is needed
// or applied in JSON. Row is the Go type of one line.
package report
