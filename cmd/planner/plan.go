package main

import (
	"context"
	"errors"
	"io"

	"github.com/safeperm/safeperm/internal/cliconf"
)

func planRun(ctx context.Context, cfg *runConfig, getenv cliconf.Getenv, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
