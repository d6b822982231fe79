// Package reliability proves that safeperm survives what production throws
// at it. Its tests run the real binaries (planner, worker, pvwasim and a
// nats-server built from go.mod) as separate processes on loopback, break
// them (SIGKILLed workers, a lost NATS node, PVWA faults, permanent
// failures, bad input, leaked secrets, concurrent planners and workers) and
// then check the simulated vault Safe by Safe against its seeded state and
// the results stream message by message.
//
// The package holds no code of its own besides this comment; everything is
// in the _test.go files. Every figure worth quoting is logged with the
// prefix "RELIABILITY:".
//
//	go test -race ./reliability/                 # fast variants (part of make test)
//	SAFEPERM_SOAK=1 go test -v ./reliability/    # 10,000-Safe soak (make reliability)
package reliability
