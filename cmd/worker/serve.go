package main

import (
	"context"
	"errors"
	"io"

	"github.com/safeperm/safeperm/internal/cliconf"
)

func serve(ctx context.Context, cfg *config, getenv cliconf.Getenv, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
