// Package jobs is safeperm's contract with NATS JetStream: the job, result
// and run messages, the subjects, streams, consumers and KV buckets that
// carry them, and the few operations every command needs on top (publish
// jobs with backpressure, publish one result per job, dead-letter, follow
// results, keep run records and planner leases).
//
// # Flow
//
// The planner creates a Run record, takes the run's lease, publishes one Job
// per Safe (Publisher) and may publish skipped Results itself. Workers share
// the durable pull consumer "workers": each decodes a Job (DecodeJob), does
// the PVWA read-modify-write, publishes exactly one Result (PublishResult)
// and acks. A job that cannot succeed is dead-lettered (DeadLetterMsg) and
// then Termed; a job the consumer gives up on after MaxDeliver attempts is
// moved to the DLQ by RunDeadLetterMover, which also publishes its failed
// Result. Watchers and reports read results with Follow/Replay and count
// them with Tally; a run is complete when Tally.Done() == Run.Expected()
// and Run.PlanningDone.
//
// # Streams, subjects and consumers
//
//	stream               retention  subjects                                            notes
//	SAFEPERM_JOBS        workqueue  safeperm.jobs.<run>.<safeKey>                       DiscardNew; MaxMsgs (MaxJobs, default 2M);
//	                                                                                    MaxMsgsPerSubject 1 + DiscardNewPerSubject
//	                                                                                    (one pending job per Safe per run); dedup 2h
//	SAFEPERM_RESULTS     limits     safeperm.results.<run>.<status>                     MaxAge 30d; dedup 2h
//	SAFEPERM_DLQ         limits     safeperm.dlq.<run>.<safeKey>                        MaxAge 30d; dedup 2h; original payload +
//	                                                                                    Safeperm-Dlq-* headers
//	SAFEPERM_ADVISORIES  workqueue  $JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.         MaxAge 30d; only max-deliveries advisories
//	                                SAFEPERM_JOBS.>
//
//	consumer   stream               kind           settings
//	workers    SAFEPERM_JOBS        durable pull   AckExplicit, AckWait 60s, MaxDeliver 8, MaxAckPending 1024,
//	                                               no BackOff, filter safeperm.jobs.>
//	dlq-mover  SAFEPERM_ADVISORIES  durable pull   AckExplicit, AckWait 30s, MaxDeliver unlimited
//	(none)     SAFEPERM_RESULTS     ordered        created by Follow/Replay per reader, filter safeperm.results.<run>.*
//
//	KV bucket        key     value                                         settings
//	safeperm_runs    <run>   Run record (JSON)                             History 5, TTL 30d (= ResultsMaxAge)
//	safeperm_leases  <run>   {"holder","acquired","renewed"} (JSON)        History 1, per-key TTL (LimitMarkerTTL 1m)
//	safeperm_intents <run>.<safeKey>  {"v":2,"members":[{"name","before"|"absent"}]}  a worker's write intent (Intents)
//
// Leases live in their own bucket because per-key TTLs only expire in a
// bucket with History 1 (verified on nats-server 2.15.2). Every lease write
// is a compare-and-set on the key's revision, and every lease decision reads
// the key from the stream leader (STREAM.MSG.GET), not with KeyValue.Get: a
// direct get may be answered by an R3 replica that has not yet applied the
// last write. A write whose ack was lost (a canceled or failed publish the
// server stored anyway) is recognised on the next read by the value's
// holder and acquired time, so Release still deletes the lease and renewals
// go on.
//
// Tokens: <run> is a run id, ^[A-Za-z0-9_-]{1,64}$, normally from NewRunID
// ("20261123T094512Z-3f9a2c"). <safeKey> is SafeKey(name): unpadded
// base64url of the lower-cased Safe name ("Linux Root" → "bGludXggcm9vdA"),
// valid as a subject token and KV key; Safe names are unique
// case-insensitively. <status> is one of the six Status values.
//
// Msg-IDs: a job and its result both use "<run>/<safeKey>". Re-publishing a
// job (a restarted planner) within the 2h window is dropped as a duplicate;
// after it, the per-subject limit still refuses a second pending job. A
// second result for a job (a redelivery that reported again, or the mover
// after the worker) is dropped, so each job yields exactly one result. Dead
// letters use "dlq/<jobs stream seq>".
//
// Everything is created by Setup, idempotently, from Config (DefaultConfig
// gives the values above; Replicas 3 for a cluster).
//
// # Messages
//
// All messages are JSON with "v":2 (version 2 carries policy rules: a job
// holds every rule that applies to its Safe, a result one entry per
// member). Readers reject another major version or a missing required
// field (errors wrap ErrMalformed) and ignore unknown fields, so fields can
// be added without a version bump. A worker refuses a job of version 1
// (an older planner's) as malformed: it is dead-lettered with the reason
// "unsupported version 1 (this build reads 2)". Results and run records of
// version 1 are still read, converted, so reports and rollbacks of runs
// made before an upgrade work. Permission sets are lists of Gen2 flag names
// in canonical order (pam.PermSet); the PVWA object form
// {"listAccounts":true,...} is also accepted on input. Times are RFC 3339
// in UTC.
//
// Job (subject safeperm.jobs.<run>.<safeKey>):
//
//	{"v":2,"run":"20261123T094512Z-3f9a2c","mode":"apply",
//	 "safe":{"urlId":"Linux%20Root","name":"Linux Root"},
//	 "rules":[
//	  {"rule":"psm-unlock","member":{"name":"PSMAppUsers","type":"Group","searchIn":"Vault"},
//	   "action":"grant","permissions":["listAccounts","unlockAccounts"]},
//	  {"rule":"domain-move","member":{"name":"NEWCORP Ops Admins","type":"Group","searchIn":"Vault"},
//	   "action":"copyFrom","source":"Domain Ops Admins","removeSource":true},
//	  {"rule":"offboard-jdoe","member":{"name":"jdoe","type":"User","searchIn":"Vault"},"action":"absent"}],
//	 "created":"2026-11-23T09:45:12.345Z"}
//
//	field            required  meaning
//	v                yes       schema major version, 2
//	run              yes       run id
//	mode             yes       "apply" (bring the members in line), "check" (report drift only),
//	                           "rollback" (put back restore where the member is still as expect)
//	safe.urlId       yes       PVWA safeUrlId, used verbatim in request paths
//	safe.name        yes       Safe name; its SafeKey is the subject token
//	rules            apply,    the rules of the policy that apply to the Safe, in policy order
//	                 check     (policy.Directive); at least one
//	rules[].rule     yes       rule name
//	rules[].member   yes       {name, type (User|Group|Role), searchIn ("" = PVWA default)}
//	rules[].action   yes       grant | revoke | exactly | copyFrom | absent
//	rules[].permissions  grant, revoke, exactly: the flags (non-empty)
//	rules[].source   copyFrom  the member whose flags and expiry are copied
//	rules[].removeSource  no   copyFrom: remove the source after the member's write succeeded
//	restore          rollback  [{rule, member, to, expect}]: put member back to "to" (null: remove
//	                           it) where it is still "expect" (null: absent), else "conflict"
//	created          no        when the planner made the job
//
// MemberState: {"permissions":[...],"expiration":1798761600}; expiration
// (Unix seconds) is omitted when the membership does not expire. A null or
// missing MemberState means "not a member".
//
// Result (subject safeperm.results.<run>.<status>, Msg-ID <run>/<safeKey>):
//
//	{"v":2,"run":"20261123T094512Z-3f9a2c","mode":"apply",
//	 "safe":{"urlId":"Linux%20Root","name":"Linux Root"},"status":"applied",
//	 "members":[
//	  {"rule":"psm-unlock","member":{"name":"PSMAppUsers","type":"Group","searchIn":"Vault"},
//	   "status":"applied","change":"update",
//	   "before":{"permissions":["listAccounts"]},
//	   "after":{"permissions":["listAccounts","unlockAccounts"]},"added":["unlockAccounts"]},
//	  {"rule":"offboard-jdoe","member":{"name":"jdoe","type":"User","searchIn":"Vault"},
//	   "status":"unchanged"}],
//	 "attempts":1,"worker":"worker-7f9c/4121","time":"2026-11-23T09:46:03.12Z"}
//
//	{"v":2,"run":"…","mode":"check","safe":{…},"status":"drift",
//	 "members":[{"rule":"helpdesk-no-retrieve","member":{"name":"HelpDesk","type":"Group"},
//	   "status":"drift","change":"update","before":{"permissions":["useAccounts","retrieveAccounts","listAccounts"]},
//	   "after":{"permissions":["useAccounts","listAccounts"]},"removed":["retrieveAccounts"]}],"time":"…"}
//
//	{"v":2,"run":"…","mode":"apply","safe":{…},"status":"failed",
//	 "errorCode":"MAX_DELIVERIES","error":"gave up after 8 deliveries; job moved to SAFEPERM_DLQ",
//	 "attempts":8,"worker":"dlq-mover/host-1","time":"…"}
//
//	field        required  meaning
//	v, run, mode, safe     as in Job (safe.name required)
//	status       yes       the Safe's outcome, the most telling of its members' (SafeStatus:
//	                       failed, conflict, drift, applied, unchanged, skipped); the subject
//	                       and every count use it
//	members      no        one entry per member the rules concern (none for a Safe the
//	                       planner skipped, or a job that failed before any read):
//	  rule                 the rule(s) concerning the member, comma-separated
//	  member               {name, type, searchIn}
//	  status               applied | unchanged | drift | skipped | failed | conflict
//	  change               add | update | remove (drift: what apply would do); absent: nothing
//	  before               the member as read before any write (absent: not a member)
//	  after                after the write; drift: as it would be; else as read
//	  added, removed       flags set and cleared (drift: that would be)
//	  errorCode, error     failed/conflict member
//	  reason               skipped (e.g. a predefined user) or left as it is (a copyFrom whose
//	                       source is not a member)
//	errorCode    no        failed/conflict: stable code, e.g. MAX_DELIVERIES, POLICY_CONFLICT,
//	                       or a PVWA code such as CAWS00001E
//	error        no        failed/conflict: human-readable message
//	op           no        failed: the PVWA operation that failed (GET member, list members,
//	                       PUT member, POST member, DELETE member)
//	reason       no        skipped: why the Safe was left alone (out of scope, no rule applies)
//	attempts     no        delivery count when the job finished
//	worker       no        process that produced the result
//	time         no        when the result was produced
//
// Run record (KV safeperm_runs, key <run>):
//
//	{"v":2,"id":"20261123T094512Z-3f9a2c","mode":"apply","state":"running",
//	 "params":{"policy":{"file":"policy.yaml","digest":"5c1f0e9a7b3d2c4e8f6a1b0c",
//	   "rules":["psm-unlock","domain-move"],"allowRemovals":true},
//	   "include":"scope/include.txt","pvwaHost":"pvwa.example.com","plannerHost":"host-1/42","rate":20},
//	 "planned":41873,"published":41873,"skipped":12,"planningDone":true,
//	 "started":"2026-11-23T09:45:12Z"}
//
// state is planning → running → done, or failed / canceled (RunState);
// "ended" and "error" appear when set. Expected() = published + skipped is
// the number of results the run will produce.
//
// Dead letter (stream SAFEPERM_DLQ): the body is the job's original bytes;
// headers Safeperm-Dlq-Reason ("malformed: …", "max deliveries (8)"),
// Safeperm-Dlq-Subject, Safeperm-Dlq-Stream-Seq, Safeperm-Dlq-Deliveries,
// Safeperm-Dlq-Time, Safeperm-Dlq-By (ParseDeadLetterHeader reads them).
//
// # Worker contract
//
// For each message of the workers consumer: DecodeJob; if ErrMalformed,
// DeadLetterMsg then TermWithReason. Otherwise do the job and publish its
// Result with PublishResult before acking (a crash in between redelivers
// the job; its second result is dropped as a duplicate). For transient
// errors NakWithDelay (each Nak counts toward MaxDeliver); call InProgress
// on long jobs. For a permanent failure publish a failed Result, then ack
// (or dead-letter and Term). Run RunDeadLetterMover in every worker
// process.
package jobs
