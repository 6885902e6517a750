package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Hashes made by the real tools (shared/testdata/password-vectors.tsv); the
// password of all but the last two is "correct horse battery staple".
const (
	vectorPBKDF2600000 = "pbkdf2:sha256:600000$zz6p3MXQkMvwgnl5$83a9c1d0ee7ba861a053ba9705209a6627179d0d815be74a68a268c6e29e1278"
	vectorPBKDF2260000 = "pbkdf2:sha256:260000$Fig87degkzlff2AP$f7f1692fe9d73de0e32fb105819bc4d138c80fb81fa2b97aac6d67f8c2a5e82f"
	vectorPBKDF2SHA1   = "pbkdf2:sha1:2000$6PmfWOFNKATc4bq8$82917a5027dfb25fda63611663d35414fe609dd7"
	vectorScrypt16384  = "scrypt:16384:8:1$g8nqe6yHGPCvEqMH$e0e8c92819964e826ec9d39ac4b66072cbd87edfc55336739fa22125fb707a22a6f27cff125f54cbf9530b7f63196fc7201001e96599a99417d3f1e24ebc9ed6"
	// werkzeug 3.1's default scrypt parameters (password "correct horse").
	vectorScrypt32768 = "scrypt:32768:8:1$saltsaltsaltsalt$87fed921912bbef25dbc6b59a6201919cc232fc4a92925d34a75673beac90fde668156541f91e6445945d083f225d4749571563c101ada0faa4fc2e9bcadafc3"
	vectorArgon2id    = "$argon2id$v=19$m=4096,t=2,p=1$S0JQeWNHOURpTnpLM01RbQ$Kj2usJtR06nK+SvjbqPjj4FsL7MHSKUQJI+A1FGL88w"
	vectorBcrypt5     = "$2y$05$NhshH5Jxvu9X.7gKQ3l/Fup55myGRY0GwBhM46qmA./okMleSTn3e" // htpasswd -B -C 5
)

// timingKind is one kind of failed login: a user (or none) with a stored hash.
type timingKind struct {
	name, user, hash string // user "" = an unknown name
}

var timingKinds = []timingKind{
	{"unknown user (reference)", "", ""},
	{"pbkdf2:sha256:600000 (default kind, control)", "t_pbkdf2_600000", vectorPBKDF2600000},
	{"pbkdf2:sha256:260000 (Python app)", "t_pbkdf2_260000", vectorPBKDF2260000},
	{"scrypt:16384:8:1 (werkzeug)", "t_scrypt_16384", vectorScrypt16384},
	{"scrypt:32768:8:1 (werkzeug 3.1 default)", "t_scrypt_32768", vectorScrypt32768},
	{"bcrypt $2y$05 (htpasswd -B -C 5)", "t_bcrypt_5", vectorBcrypt5},
	{"argon2id m=4096,t=2,p=1", "t_argon2id", vectorArgon2id},
	{"pbkdf2:sha1:2000", "t_pbkdf2_sha1_2000", vectorPBKDF2SHA1},
	{"unusable (\"plaintextpassword\")", "t_unusable", "plaintextpassword"},
}

// timing is figure 2: the time of a wrong password for users whose stored
// hash is not the default kind, against the time for an unknown user. The
// users are inserted directly into the database. Each round sends one
// request of every kind, in a shuffled order, sequentially over one
// kept-alive connection from a fresh source address (so that the per-address
// throttle, 20 failures, never answers); run the server with lockout
// disabled (-lockout -1).
func timing(args []string) error {
	fs := flag.NewFlagSet("timing", flag.ContinueOnError)
	url := fs.String("url", "", "server base URL")
	db := fs.String("db", "", "the server's database (SQLite file or postgres:// URL), to insert the users")
	n := fs.Int("n", 25, "rounds (samples per kind)")
	net3 := fs.Int("net", 1, "source addresses are 127.NET.x.y, one per round")
	password := fs.String("password", "correct horse battery stapla", "the wrong password sent")
	result := fs.String("result", "", "append the figures to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *db == "" {
		return fmt.Errorf("-url and -db are required")
	}
	users := map[string]string{}
	for _, k := range timingKinds {
		if k.user != "" {
			users[k.user] = k.hash
		}
	}
	if err := insertUsers(*db, users); err != nil {
		return err
	}
	load0 := loadavg()
	samples := make([][]time.Duration, len(timingKinds))
	// paired[i] holds, per round, kind i's time over the unknown user's
	// time in the same round: robust to the load drifting between rounds.
	paired := make([][]float64, len(timingKinds))
	statuses := map[int]int{}
	order := make([]int, len(timingKinds))
	for i := range order {
		order[i] = i
	}
	for round := -1; round < *n; round++ { // round -1 warms up and is not counted
		r := round + 1
		src := fmt.Sprintf("127.%d.%d.%d", *net3, 1+r/250, 1+r%250)
		c := newClient(src, 1, 30*time.Second)
		if s, err := get(context.Background(), c, *url+"/healthz"); err != nil || s != http.StatusOK {
			return fmt.Errorf("healthz from %s: %d %v", src, s, err)
		}
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		times := make([]time.Duration, len(timingKinds))
		for _, i := range order {
			k := timingKinds[i]
			user := k.user
			if user == "" {
				user = fmt.Sprintf("nobody_%d_%d", r, rand.IntN(1e6))
			}
			status, d, err := postJSON(context.Background(), c, *url+"/login",
				map[string]string{"username": user, "password": *password})
			if err != nil {
				return err
			}
			if round >= 0 {
				statuses[status]++
				if status == http.StatusUnauthorized {
					samples[i] = append(samples[i], d)
					times[i] = d
				}
			}
		}
		if round >= 0 && times[0] > 0 {
			for i, d := range times {
				if d > 0 {
					paired[i] = append(paired[i], float64(d)/float64(times[0]))
				}
			}
		}
		c.CloseIdleConnections()
	}
	ref := median(samples[0])
	fmt.Printf("timing: %d rounds; statuses %v; load before %s, after %s\n", *n, statuses, load0, loadavg())
	fmt.Printf("  %-46s %8s %10s %10s %10s %6s %7s\n", "stored hash", "samples", "median", "p10", "p90", "ratio", "paired")
	for i, k := range timingKinds {
		m := median(samples[i])
		ratio := float64(m) / float64(ref)
		pr := medianFloat(paired[i])
		fmt.Printf("  %-46s %8d %10s %10s %10s %6.2f %7.2f\n", k.name, len(samples[i]), ms(m),
			ms(percentile(samples[i], 10)), ms(percentile(samples[i], 90)), ratio, pr)
		value := fmt.Sprintf("%.2f", ratio)
		note := fmt.Sprintf("median %s vs unknown %s; median of per-round ratios %.2f (p10 %s, p90 %s, n=%d)", ms(m), ms(ref),
			pr, ms(percentile(samples[i], 10)), ms(percentile(samples[i], 90)), len(samples[i]))
		if i == 0 {
			value = ms(m)
			note = fmt.Sprintf("the reference (p10 %s, p90 %s, n=%d); statuses %v; load %s", ms(percentile(samples[i], 10)),
				ms(percentile(samples[i], 90)), len(samples[i]), statuses, load0)
		}
		setting := strings.TrimSpace(k.name)
		if err := record(*result, "2 timing: wrong pw / unknown", setting, value, note); err != nil {
			return err
		}
	}
	return nil
}

func medianFloat(f []float64) float64 {
	if len(f) == 0 {
		return 0
	}
	s := slices.Clone(f)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
