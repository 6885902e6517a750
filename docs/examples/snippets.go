//lint:file-ignore SA4006 tokens shows three calls as docs/accounts.md does, without the checks of err between them

package examples

import (
	"context"
	"net/http"
	"net/netip"
	"reflect"

	"github.com/minimost/minimost/authn"
	"github.com/prometheus/client_golang/prometheus"
)

// tokens is docs/accounts.md's example of app tokens.
func tokens(ctx context.Context, a *authn.Authenticator) ([]authn.TokenInfo, error) {
	token, err := a.CreateToken(ctx, "alice", "ci") // "mmt_" + 43 base64url characters; shown once
	list, err := a.Tokens(ctx, "alice")             // []TokenInfo{Name, Created, LastUsed}
	err = a.RevokeToken(ctx, "alice", "ci")
	_ = token
	return list, err
}

// optionalSession is docs/routes.md's example of OptionalSession.
func optionalSession(a *authn.Authenticator, mux *http.ServeMux, home http.Handler) {
	mux.Handle("/{$}", a.OptionalSession(home)) // home: name, ok := authn.Username(r.Context())
}

// trustedProxy is docs/proxies.md's example of TrustedProxies.
func trustedProxy() authn.Config {
	cfg := authn.Config{HTTP: authn.HTTPConfig{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.5/32")},
	}}
	return cfg
}

// docs/routes.md's Prometheus collector of authn.Stats.

var authnDesc = prometheus.NewDesc("minimost_authn_total", "authn.Stats counters.", []string{"counter"}, nil)

type authnCollector struct{ a *authn.Authenticator }

func (c authnCollector) Describe(ch chan<- *prometheus.Desc) { ch <- authnDesc }
func (c authnCollector) Collect(ch chan<- prometheus.Metric) {
	v := reflect.ValueOf(c.a.Stats())
	for i := range v.NumField() {
		ch <- prometheus.MustNewConstMetric(authnDesc, prometheus.CounterValue, float64(v.Field(i).Int()), v.Type().Field(i).Name)
	}
}

// prometheus.MustRegister(authnCollector{a})
