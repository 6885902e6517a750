package middleware_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"time"

	"github.com/minimost/minimost/middleware"
)

func ExampleChain() {
	// Behind a reverse proxy at 10.0.0.1: believe its X-Forwarded-For,
	// allow each client 5 failed requests, then one a minute.
	throttle := middleware.NewThrottle(middleware.ThrottleConfig{Burst: 5, Interval: time.Minute})
	protect := middleware.Chain(
		middleware.ClientIP([]netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}),
		middleware.NoStore,
		middleware.MaxBytes(4<<10),
		throttle.Wrap,
	)
	h := protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, _ := middleware.ClientIPFromContext(r.Context())
		http.Error(w, "no entry for "+ip.String(), http.StatusForbidden) // a failure: costs a token
	}))

	for range 6 {
		r := httptest.NewRequest("POST", "/", nil)
		r.RemoteAddr = "10.0.0.1:40000"
		r.Header.Set("X-Forwarded-For", "198.51.100.23")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(w.Code, w.Header().Values("Retry-After"))
	}
	// Output:
	// 403 []
	// 403 []
	// 403 []
	// 403 []
	// 403 []
	// 429 [60]
}
