package authn

import (
	"net/url"
	"strings"
	"testing"
)

// TestSQLiteDSN checks both spellings of the connection settings, since
// sqliteshim picks modernc.org/sqlite or, with cgo and the cgosqlite tag,
// mattn/go-sqlite3. (.ci/run also runs the package's tests on the latter.)
func TestSQLiteDSN(t *testing.T) {
	for driver, want := range map[string][]string{
		"sqlite":  {"_pragma=busy_timeout(10000)", "_pragma=journal_mode(WAL)", "_pragma=synchronous(FULL)", "_txlock=immediate"},
		"sqlite3": {"_busy_timeout=10000", "_journal_mode=WAL", "_synchronous=FULL", "_txlock=immediate"},
	} {
		dsn := sqliteDSN("/data/a?b#c%d.db", driver)
		path, query, ok := strings.Cut(dsn, "?")
		if !ok || path != "file:/data/a%3Fb%23c%25d.db" {
			t.Errorf("%s: path part %q", driver, path)
		}
		decoded, err := url.QueryUnescape(query)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(decoded, w) {
				t.Errorf("%s: %q lacks %q", driver, decoded, w)
			}
		}
	}
}
