package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/safeperm/safeperm/internal/pam"
)

// Logon logs c on, retrying with backoff while the failure is transient (a
// PVWA restarting, a network blip) until attempts run out or ctx ends. A
// refused logon (wrong credentials, a locked user) returns at once: retrying
// it would lock the account.
func Logon(ctx context.Context, c *pam.Client, attempts int, log zerolog.Logger) error {
	for i := 1; ; i++ {
		err := c.Logon(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, pam.ErrUnauthorized) || errors.Is(err, pam.ErrPermanent) || ctx.Err() != nil || i >= attempts {
			return fmt.Errorf("PVWA logon: %w", err)
		}
		d := backoff(i, time.Second, 30*time.Second)
		log.Warn().Err(err).Dur("retry_in", d).Msg("PVWA logon failed; retrying")
		select {
		case <-ctx.Done():
			return fmt.Errorf("PVWA logon: %w", err)
		case <-time.After(d):
		}
	}
}
