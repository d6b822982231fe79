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
// All messages are JSON with "v":1. Readers reject another major version or
// a missing required field (errors wrap ErrMalformed) and ignore unknown
// fields, so fields can be added without a version bump. Permission sets
// are lists of Gen2 flag names in canonical order (pam.PermSet); the PVWA
// object form {"listAccounts":true,...} is also accepted on input. Times
// are RFC 3339 in UTC.
//
// Job (subject safeperm.jobs.<run>.<safeKey>):
//
//	{"v":1,"run":"20261123T094512Z-3f9a2c","mode":"apply",
//	 "safe":{"urlId":"Linux%20Root","name":"Linux Root"},
//	 "member":{"name":"PSMAppUsers","type":"Group","searchIn":"Vault"},
//	 "permissions":["listAccounts","unlockAccounts"],
//	 "created":"2026-11-23T09:45:12.345Z"}
//
//	field         required  meaning
//	v             yes       schema major version, 1
//	run           yes       run id
//	mode          yes       "apply" (add missing flags), "check" (report drift only),
//	                        "rollback" (reserved: put back restore if the member still equals expect)
//	safe.urlId    yes       PVWA safeUrlId, used verbatim in request paths
//	safe.name     yes       Safe name; its SafeKey is the subject token
//	member.name   yes       member to ensure, e.g. PSMAppUsers
//	member.type   yes       User, Group or Role
//	member.searchIn no      directory to look the member up in when adding it ("" = PVWA default)
//	permissions   yes*      flags the member must have; *may be empty for rollback
//	restore       no        rollback: MemberState to restore (absent = remove the member)
//	expect        no        rollback: MemberState the member must still be in, else "conflict"
//	created       no        when the planner made the job
//
// MemberState: {"permissions":[...],"expiration":1798761600}; expiration
// (Unix seconds) is omitted when the membership does not expire. A missing
// MemberState means "not a member".
//
// Result (subject safeperm.results.<run>.<status>, Msg-ID <run>/<safeKey>):
//
//	{"v":1,"run":"20261123T094512Z-3f9a2c","mode":"apply",
//	 "safe":{"urlId":"Linux%20Root","name":"Linux Root"},"member":"PSMAppUsers",
//	 "status":"applied",
//	 "before":{"permissions":["listAccounts"]},
//	 "after":{"permissions":["listAccounts","unlockAccounts"]},
//	 "attempts":1,"worker":"worker-7f9c/4121","time":"2026-11-23T09:46:03.12Z"}
//
//	{"v":1,"run":"…","mode":"check","safe":{…},"member":"PSMAppUsers","status":"drift",
//	 "before":{"permissions":["listAccounts"]},"missing":["unlockAccounts"],"time":"…"}
//
//	{"v":1,"run":"…","mode":"apply","safe":{…},"member":"PSMAppUsers","status":"failed",
//	 "errorCode":"MAX_DELIVERIES","error":"gave up after 8 deliveries; job moved to SAFEPERM_DLQ",
//	 "attempts":8,"worker":"dlq-mover/host-1","time":"…"}
//
//	field      required  meaning
//	v, run, mode, safe   as in Job (safe.name required)
//	member     no        member name
//	status     yes       applied | unchanged | drift | skipped | failed | conflict (see Status)
//	before     no        member state read before any write (absent: not a member / not read)
//	after      no        member state after the write (applied) or as read
//	missing    no        drift: flags the member lacks
//	errorCode  no        failed/conflict: stable code, e.g. MAX_DELIVERIES or a PVWA code
//	error      no        failed/conflict: human-readable message
//	reason     no        skipped: why the Safe was left alone
//	attempts   no        delivery count when the job finished
//	worker     no        process that produced the result
//	time       no        when the result was produced
//
// Run record (KV safeperm_runs, key <run>):
//
//	{"v":1,"id":"20261123T094512Z-3f9a2c","mode":"apply","state":"running",
//	 "params":{"member":{"name":"PSMAppUsers","type":"Group","searchIn":"Vault"},
//	   "permissions":["listAccounts","unlockAccounts"],"include":"scope/include.txt",
//	   "pvwaHost":"pvwa.example.com","plannerHost":"host-1/42","rate":20},
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
