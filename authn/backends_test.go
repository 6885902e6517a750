package authn_test

import (
	"fmt"
	"testing"

	"github.com/uptrace/bun"
)

// countRows counts the rows of a table matching a condition.
func countRows(t testing.TB, db *bun.DB, table, where string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(fmt.Sprintf("SELECT count(*) FROM %s WHERE %s", table, where), args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
