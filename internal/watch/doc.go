// Package watch follows a run to its end and shows its progress: a
// progress bar on a terminal, plain lines or JSON lines otherwise, the
// end-of-run Summary (and its JSON form, Final) with the failures grouped
// by cause and what to do about each, and the "planner status" table.
//
// Watch reads the run's results with jobs.Follow from the first one on
// and counts them with a jobs.Tally, so joining a run midway (or after it
// ended) shows its true totals; it reads the run record every Poll for the
// expected count. A run is complete when its planning is done and a result
// arrived for every expected Safe (jobs.Run.Expected). While the planner is
// still publishing, the total shown is the Safes planned so far, marked
// provisional with a "+" ("1234/5000+").
//
// The rate is computed from the results' own time stamps over the last 30
// seconds (or since the run started, if later), so a joining watcher does
// not mistake the replay of earlier results for speed; ETA is the
// remaining Safes at that rate, unknown ("-", null) while planning.
//
// # Views
//
// Bar (ViewBar, or ViewAuto on a terminal):
//
//	run 20261123T094512Z-3f9a2c 1234/5000 [=====>------] 24.7% 310.2 Safes/s ETA 12s | applied 800 unchanged 432 failed 2
//
// with the first failed or conflict Safe of each cause (see Failures by
// cause) printed above the bar as it arrives; the summary counts the rest:
//
//	failed "Linux Root": MAX_DELIVERIES: gave up after 8 deliveries; job moved to SAFEPERM_DLQ
//
// The bar is github.com/vbauerster/mpb/v8: actively maintained, no cgo,
// small dependencies (ewma, go-runewidth), renders from its own goroutine
// so updates never block Watch, supports custom decorators (our own rate,
// provisional total and counts) and, unlike schollz/progressbar, prints
// lines above a running bar safely from any goroutine (Progress.Write),
// which is what failure lines need. Terminal detection uses
// golang.org/x/term.
//
// Plain (ViewPlain, or ViewAuto when Out is not a terminal), one line
// every Interval, one for the first failure of each cause, and a final one:
//
//	run 20261123T094512Z-3f9a2c: 1234/5000 (24.7%) 310.2 Safes/s ETA 12s | applied 800 unchanged 432 failed 2
//	run 20261123T094512Z-3f9a2c: failed "Linux Root": MAX_DELIVERIES: gave up after 8 deliveries
//	run 20261123T094512Z-3f9a2c: 1234/5000+ (24.7%, planning) 310.2 Safes/s ETA - | applied 800
//	run 20261123T094512Z-3f9a2c: done 5000/5000 (100.0%) in 2m3s | applied 4000 unchanged 998 failed 2
//	run 20261123T094512Z-3f9a2c: stopped at 1234/5000 (24.7%): <error> | applied 800
//
// Only non-zero counts are listed, in the order of jobs.AllStatuses.
//
// JSON (ViewJSON): one object per line every Interval, "type":"progress".
// Field names are stable:
//
//	{"type":"progress","run":"20261123T094512Z-3f9a2c","mode":"apply","state":"running",
//	 "planned":4988,"done":1234,"expected":5000,"total":5000,"planningDone":true,
//	 "counts":{"applied":800,"conflict":0,"drift":0,"failed":2,"skipped":12,"unchanged":420},
//	 "rate":310.2,"etaSeconds":12,"time":"2026-11-23T09:46:03.12Z",
//	 "final":false,"complete":false}
//
//	field         meaning
//	type          "progress"
//	run, mode     run id and mode
//	state         run state from the run record (planning, running, done, failed, canceled)
//	planned       jobs planned so far (Run.Planned; excludes skipped Safes)
//	done          Safes with a result
//	expected      Run.Expected(): published jobs + skipped results; final once planningDone
//	total         the denominator the other views show: expected once planningDone,
//	              else the Safes planned so far (at least done)
//	planningDone  whether expected is final
//	counts        Safes by status; all six statuses always present
//	rate          Safes per second (one decimal)
//	etaSeconds    seconds to completion, null when unknown (planning, no rate yet)
//	time          when the line was written (RFC 3339, UTC)
//	final         false (the Final object has true)
//	complete      false (the Final object says whether every result arrived)
//
// Failures are not written in the JSON view, and Watch writes no last
// object: the command does (NewFinal, Final.Write), because only it knows
// the report it wrote and the commands to run next. Final has
// "type":"summary", "final":true, the fields above but rate and
// etaSeconds, and:
//
//	failed        failed + conflict Safes
//	tookSeconds   how long the run took (one decimal)
//	complete      every expected result arrived
//	failures      the failed and conflict Safes grouped by cause, largest first:
//	              [{"status","errorCode","op","http","count","examples","advice","error"}]
//	drift         check runs: the first SummaryMaxListed Safe names with drift
//	unmatched     include-list names the PVWA did not list (planner run)
//	next          {"reportFile","report","watch","rollback"}: the report written and
//	              the exact commands for this run
//	exitCode      the command's exit code
//	error         why the run or the watch stopped early (absent on success)
//
// # Failures by cause
//
// Summary, Final and Status group failed and conflict Safes by Cause: the
// error code, the HTTP status (read from the error text: CAWS00001E is a
// 403, an unknown member or invalid input depending on it) and the PVWA
// call (jobs.Result.Op), each group with its count, the first ExampleNames
// Safe names and one sentence of advice, e.g.
//
//	failed or conflict: 60 Safes, by cause:
//	  CAWS00001E (HTTP 403, PUT member) on 58 Safes, e.g. "Finance Team 042", "db.prod.017", "Ops (EU) 7":
//	    the API user may read but not change members on these Safes (it lacks Manage Safe Members): ...
//	  SFWS0007 (HTTP 404, GET member) on 2 Safes: "APP_00042_PRD", "Zürich Ops 3":
//	    the Safe was deleted after it was listed, or the API user is no longer a member of it: ...
//
// The advice covers CAWS00001E/403 (by read or write), SFWS0007, an
// unknown member (404 on POST), PASWS167E and other 400s, 401,
// MAX_DELIVERIES, NOT_APPLIED, RACE, TIMEOUT, TRANSIENT, POLICY_CONFLICT
// and rollback conflicts; any other code gets a sentence naming it.
//
// Safe names and messages come from the vault and workers, so every view
// quotes names (strconv.Quote) and replaces control characters in messages:
// nothing a Safe is called can move the cursor or recolour a terminal.
package watch
