package authn

import "context"

// SweepBudgets runs the sweep of both per-client budgets now, as the
// background sweeper does on its tick: for the tests of package authn_test.
func (a *Authenticator) SweepBudgets(ctx context.Context) {
	a.handlers.failures.sweep(ctx)
	a.handlers.registrations.sweep(ctx)
	a.handlers.passkeyStarts.sweep(ctx)
}
