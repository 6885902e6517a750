// Package authn adds password authentication to net/http programs: users in
// a SQL database (an embedded SQLite file by default, PostgreSQL for several
// instances), the werkzeug-compatible hashes of package password, and an
// account lockout that holds under parallel attack.
//
// An Authenticator is made by [Open] (a SQLite file), by [New] or [NewOwned]
// (a *bun.DB), or by Open of package [github.com/minimost/minimost/authn/postgres]
// (PostgreSQL), which a program imports only when it uses PostgreSQL: this
// package links no PostgreSQL driver. It offers account operations
// ([Authenticator.Register], [Authenticator.Authenticate],
// [Authenticator.SetPassword], [Authenticator.ChangePassword],
// [Authenticator.Lock], [Authenticator.Unlock],
// [Authenticator.Delete], [Authenticator.Account], [Authenticator.ListAccounts])
// and standard http.Handlers: [Authenticator.BasicAuth] wraps an existing
// handler; [Authenticator.Routes] serves every drop-in route under one
// prefix ([HTTPConfig.Prefix]), and [Authenticator.LoginHandler],
// [Authenticator.LogoutHandler], [Authenticator.RegisterHandler] and
// [Authenticator.SessionsHandler] and [Authenticator.ChangePasswordHandler]
// are the same routes one by one; [Authenticator.RequireSession] guards
// pages behind a login session, and [Authenticator.OptionalSession] tells
// pages who is signed in without requiring anyone. Redirects answer htmx
// requests (HX-Request: true) with HX-Redirect instead.
// [Authenticator.ForwardAuthHandler] protects applications that are not Go
// handlers, behind nginx, Caddy or Traefik (forward auth).
// App tokens ([Authenticator.CreateToken], [Authenticator.Tokens],
// [Authenticator.RevokeToken]) let API clients use BasicAuth without the
// account's password: see the section below.
// [Authenticator.Stats] counts logins, failures, sessions and refusals, for
// expvar or any monitoring; every failed login is a WARN line with the
// client's address, which examples/fail2ban's filter reads.
// [Authenticator.TOTP] adds a second factor to an account (an
// authenticator app's codes, with recovery codes): its password then
// signs in only together with a code, at {Prefix}/login/verify.
//
// # Sessions
//
// A login starts a server-side session: the cookie holds a random token,
// the database its SHA-256, with the session's times, the client's network
// and its User-Agent (see [SessionInfo]). A session ends at logout, after
// SessionIdleTimeout unused, or SessionLifetime after the login; a login
// with "remember me" (the form's remember box, "remember": true in JSON)
// lasts RememberFor instead (30 days), and only its cookie has a Max-Age,
// so that it outlives the browser, and no idle timeout ends it unless
// RememberIdleTimeout sets one. A change of password
// ([Authenticator.ChangePassword], or the password route of the signed-in
// user, which checks the current password exactly as a login and counts a
// wrong one toward the lockout) ends every other session of the user and
// keeps the current one under a new token; SetPassword, Lock and Delete end
// them all. A user may also end sessions: [Authenticator.SessionsHandler]
// lists their sessions and ends one or all others, [Authenticator.Sessions]
// and [Authenticator.EndSessions] do the same in Go. A user has at most
// [HTTPConfig.MaxSessionsPerUser] sessions (50): a login beyond ends the
// least recently used.
//
// # Lockout
//
// After LockoutThreshold consecutive failures an account is locked for
// LockoutDuration. Every attempt on an unlocked account is claimed (counted)
// in one atomic UPDATE before its password is checked, so however many
// requests arrive at once, on one process or on many sharing the database, at
// most LockoutThreshold passwords are checked per account and lockout period.
// A locked account is refused without checking the password.
//
// # App tokens
//
// An app token is 256 random bits with the prefix "mmt_", named per user,
// shown once and stored only as its SHA-256. BasicAuth accepts it in place
// of the password ("user:token") and alone as "Authorization: Bearer". A
// token costs one indexed read (or none: see Reads from memory) and no
// hash. Password guessing never stops a token: a lockout caused by failed
// passwords leaves tokens working, while RevokeToken, Delete and an
// administrator's Lock stop them on the next request. A wrong token is a failed attempt like a wrong password (same
// answer, same time, the client's failure budget spent; as "user:token" it
// counts toward the user's lockout).
//
// # What a client sees
//
// Unknown user, malformed username, wrong password and locked account get
// the same status, headers and body, after a verification of the same cost.
// (The login form shows the name typed again, when it is a valid username:
// the same request gets the same page whatever the account's state.)
//
//	situation                        BasicAuth          login form          login JSON
//	no or malformed credentials      401 + challenge    400, form again     400
//	bad credentials/unknown/locked   401 + challenge    401, form again     401 {"error":…}
//	success                          handler runs       303 to next or /    200 {"username":…}
//	client over its failure budget   429 + Retry-After  429                 429
//	no hashing slot / database down  503 + Retry-After  503                 503
//	body too large / content type / method  —           413 / 415 / 405 + Allow
//	cross-origin POST (CSRF)                 —           403                 403 {"error":…}
//
// The password route answers a wrong current password, or a locked
// account, as a failed login (401, the same for both), a new password that
// breaks the policy with 400 and the rule's code, and a success with 204
// to JSON.
//
// Every response of these handlers carries Cache-Control: no-store. An error
// never lets a request through.
//
// # Reads from memory
//
// Each authenticated request reads one row: the user's, behind a
// remembered Basic credential; its session; its app token. On a SQLite
// database file in WAL mode, on Linux, that read is answered from memory
// while nothing has been committed to the database since the same read was
// last made, by this process or by any other. SQLite rewrites the WAL-index
// header at the start of the -shm file on every commit, and the
// Authenticator compares it, mapped read-only, with the header it saw
// before the read, at the cost of a few loads and no system call. A lock,
// a new password, a deletion or an ended session, made through this
// package, by authctl or by another application on the same file, thus
// still applies on the very next request. Idle timeouts, lifetimes and the
// end of a lock are judged at the time of each request, as after a read.
//
// The Authenticator holds one connection of its own open, so that SQLite
// keeps the -shm file. Memory is used from the first commit after SQLite
// rebuilt the WAL-index (as it does when the first process opens the
// file); while a header is being written, or is not valid, requests read.
// When the -shm cannot be mapped as the Authenticator starts (no -shm,
// another journal mode, an in-memory database, connections that read
// uncommitted rows), and from the moment the database file or its -shm is
// found deleted, replaced or unusable, or its -wal deleted, replaced or
// damaged (checked each second, by Open's file watch in the same check
// that makes the connections reopen the file), every request reads, until
// the Authenticator is made again. PostgreSQL always reads, and so does
// Config.ReadEveryRequest. Stats.ReadsSkipped counts the reads answered
// from memory.
package authn

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/minimost/minimost/authn/internal/hotread"
	"github.com/minimost/minimost/authn/internal/seal"
	"github.com/minimost/minimost/authn/password"
	"github.com/minimost/minimost/middleware"
	"github.com/uptrace/bun"
)

// Errors of the account operations, matched with errors.Is. Clients of an
// HTTP endpoint never see which of ErrInvalidCredentials and ErrLocked it was.
var (
	// ErrInvalidCredentials: unknown user, malformed username or wrong password.
	ErrInvalidCredentials = errors.New("authn: invalid username or password")
	// ErrLocked: the account is locked; the error is a *LockedError.
	ErrLocked = errors.New("authn: account locked")
	// ErrUserExists: Register with a username already taken.
	ErrUserExists = errors.New("authn: username already taken")
	// ErrInvalidUsername: the username does not match [A-Za-z0-9_-]{1,32}.
	ErrInvalidUsername = errors.New("authn: invalid username")
	// ErrInvalidPassword: the password breaks the PasswordPolicy; the
	// wrapping error names the rule.
	ErrInvalidPassword = errors.New("authn: password rejected")
	// ErrNotFound: no user of that name.
	ErrNotFound = errors.New("authn: no such user")
	// ErrBusy: an operation waited for capacity until its context ended
	// (or HTTPConfig.HashWait passed): for a password-hashing slot or
	// hashing memory (see Config.HashConcurrency), or, for a login, for
	// the claim of its attempt, while another transaction held a lock on
	// the account's row or the database (see Authenticate). No password
	// was checked. Nothing was written, except that a login whose claim
	// had to wait may have counted its attempt toward the lockout.
	ErrBusy = errors.New("authn: password hashing capacity exhausted")
)

// nested presents err, an error of this package, as the cause inside
// another of its errors: errors.Is and errors.As still find it, and its text
// drops the "authn: " that the outer error already starts with.
func nested(err error) error { return nestedError{err} }

type nestedError struct{ err error }

func (e nestedError) Error() string { return strings.TrimPrefix(e.err.Error(), "authn: ") }
func (e nestedError) Unwrap() error { return e.err }

// LockedError is the error of Authenticate on a locked account.
// errors.Is(err, ErrLocked) is true for it.
type LockedError struct {
	Until time.Time // when the lock ends
	// Forever is true when the stored lock is no finite time in range
	// (see Account.LockedForever): it has no end, and Until is the last
	// second of year 9999.
	Forever bool
}

// Error says until when the account is locked.
func (e *LockedError) Error() string {
	if e.Forever {
		return "authn: account locked with no end"
	}
	return "authn: account locked until " + e.Until.UTC().Format(time.RFC3339)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Config configures an Authenticator. The zero Config is ready to use.
type Config struct {
	// LockoutThreshold is the number of consecutive failures that lock an
	// account. 0 means 5; a negative value disables lockout (a lock set by
	// Lock is still honoured).
	LockoutThreshold int
	// LockoutDuration is how long a lock lasts. 0 means 15 minutes.
	LockoutDuration time.Duration
	// Hasher hashes and verifies every password, the dummy verification
	// of unknown users included. nil means password.Default():
	// werkzeug's pbkdf2:sha256:600000.
	Hasher password.Hasher
	// Now is the clock. nil means time.Now.
	Now func() time.Time
	// OnEvent, when set, is called for every login success and failure,
	// lockout, unlock, registration, password change and deletion. It runs
	// synchronously in the request: keep it fast.
	OnEvent func(context.Context, Event)
	// Logger receives one line per event. nil means slog.Default().
	Logger *slog.Logger
	// PasswordPolicy is checked whenever a password is set.
	PasswordPolicy PasswordPolicy
	// HashConcurrency bounds the password hashes and verifications that
	// run at once, and so the CPU and memory they take. 0 means
	// runtime.GOMAXPROCS(0). An operation that cannot get a slot before
	// its context ends fails with ErrBusy.
	HashConcurrency int
	// HashSlotsPerClient bounds the hashing slots that the requests of one
	// client address (an IPv6 client by its network, as HTTPConfig.Throttle
	// counts it) hold at once, so that no address can take the whole
	// hashing capacity, with successful requests such as registrations
	// either: its other requests wait for its slot, within HashWait. 0
	// means 1; negative means no bound. Calls of the Go API made outside
	// the handlers of this package have no client address and are not
	// bounded.
	HashSlotsPerClient int
	// HashMemory bounds the memory, in bytes, of the hashes and
	// verifications that run at once: each reserves what its parameters
	// need (see password.Memory) and waits until that much is free. 0
	// means HashConcurrency times the larger of what the Hasher's own
	// hashes need and 64 MiB (password.Argon2id{}'s), so that hashes of the
	// default parameters of any Hasher of package password all run at once,
	// and costlier ones fewer at a time. A hash that needs more than
	// HashMemory runs alone. Negative means no bound.
	HashMemory int64

	// ReadEveryRequest makes every authenticated request read its row from
	// the database, also where it could be answered from memory (see Reads
	// from memory in the package documentation). Set it when the *bun.DB
	// given to New is a SQLite pool in shared-cache mode ("cache=shared",
	// which SQLite discourages): there, a read can join the older snapshot
	// of another connection's open transaction, and a row older than the
	// last commit could be remembered until the next one.
	ReadEveryRequest bool

	// Mailer sends the mails of account recovery: the links that verify
	// an email address and the password reset links (see Recovery). nil
	// means no mail: the routes that send it ({Prefix}/email and
	// {Prefix}/reset) are not served, and the login form links no reset.
	// With a Mailer, HTTPConfig.BaseURL is required (New fails without
	// it): links are built from it, never from a request's Host.
	Mailer Mailer
	// Recovery configures account recovery: link lifetimes, the bounds on
	// reset requests, the mail queue and the mails' templates.
	Recovery RecoveryConfig
	// SecretKey seals the TOTP secrets stored in the database (AES-256-GCM):
	// 32 bytes, kept outside the database, so that a copy of the database
	// alone does not give them. nil means: Open keeps a key of its own in a
	// file beside the database (its path with ".key" added, mode 0600,
	// made at the first TOTP enrolment, and logged then; a key file that
	// is there but unreadable, not a key, or readable by others fails
	// Open), and New has none, so that TOTP
	// enrolment fails with ErrNoSecretKey and a TOTP code cannot be checked
	// (503; recovery codes still work). Losing the key loses every TOTP second
	// factor: an administrator removes them (TOTP.Reset, authctl 2fa
	// reset) and the users enrol again. Every instance sharing a database
	// needs the same key.
	SecretKey []byte

	// HTTP settings: see HTTPConfig.
	HTTP HTTPConfig
}

// Authenticator checks passwords and manages accounts. It is safe for
// concurrent use.
type Authenticator struct {
	store     *store     // every SQL statement
	ownsDB    bool       // Open or NewOwned: Close closes the database
	file      *fileWatch // Open's watch of its file; nil for New
	hasher    password.Hasher
	threshold int // < 0: lockout disabled
	duration  time.Duration
	now       func() time.Time
	onEvent   func(context.Context, Event)
	logger    *slog.Logger
	policy    PasswordPolicy
	slots     chan struct{} // one token per running hash
	perClient *clientSlots  // nil: no bound per client
	memory    *weighted     // bytes of hashing memory; nil: no bound
	// claimTurns lets one claim per account (per database on SQLite) wait
	// in the database at a time.
	claimTurns claimTurns
	// hashMemory is what a hash of the Hasher needs, as password.Memory
	// reads the dummy hash.
	hashMemory int64

	// dummyHash is verified in place of a real hash (unknown user, locked
	// account, malformed input), so those answers take as long as a wrong
	// password does.
	dummyHash string
	// failureTiming pads failed logins to the time of a dummy verification.
	failureTiming failureTiming
	// maxPasswordBytes bounds the passwords Authenticate hashes.
	maxPasswordBytes int
	// sealKey seals TOTP secrets: Config.SecretKey, or Open's key file.
	sealKey sealKey

	// passkeys is the WebAuthn relying party; nil when passkeys are off.
	passkeys *passkeys

	// handlers are the HTTP side: settings, Basic credential cache,
	// throttle log.
	handlers *handlers
	// stats are the counters of Stats.
	stats counters
	// sessionIdle and sessionLifetime end sessions (HTTPConfig's
	// SessionIdleTimeout and SessionLifetime, defaults applied).
	sessionIdle, sessionLifetime time.Duration
	// maxSessions is HTTPConfig.MaxSessionsPerUser, its default applied;
	// negative: no limit.
	maxSessions int
	// rememberFor and rememberIdle end remembered sessions (RememberFor
	// and RememberIdleTimeout, defaults applied; rememberIdle 0: none).
	rememberFor, rememberIdle time.Duration
	// clientPrefix is the network a client address counts for, as the
	// HTTP throttle counts it: the key of HashSlotsPerClient.
	clientPrefix func(netip.Addr) netip.Prefix

	// mailer is Config.Mailer; mail its queue (nil without a Mailer);
	// recovery the settings of account recovery.
	mailer   Mailer
	mail     *mailQueue
	recovery recoverySettings

	bgctx context.Context    // ends at Close
	stop  context.CancelFunc // ends bgctx
	bg    sync.WaitGroup     // the background goroutines
}

// New returns an Authenticator over db, a *bun.DB with the SQLite or the
// PostgreSQL dialect. It creates the tables it needs if they are missing,
// adds to a sessions table of an earlier version of this package the
// columns it lacks (keeping its sessions), never alters the users table,
// and switches SQLite to WAL. An existing users table of the Python
// application works as it is.
//
// Every statement goes through db, so its query hooks see them, with these
// exceptions: the reads made on every authenticated request (the user's row
// behind a cached Basic credential, see [Authenticator.BasicAuth], the
// session behind a cookie and an app token) are statements prepared once on
// db.DB, and bun does not run hooks for prepared statements (on a database
// opened by the postgres package's Open they run on a pgx connection of
// their own instead); the writes
// that return a row (the lockout's claim, a logout's deletion, the session
// a password change keeps) are built by bun and run on db.DB, or the
// transaction's *sql.Tx, with database/sql's QueryRowContext, whose Scan
// reports the statement's commit where bun's drops it (see
// docs/bun-returning.md in the repository); and on a SQLite file in WAL mode (on Linux), New opens one connection of its own,
// with db's driver, which it holds until Close (see Reads from memory in
// the package documentation: it keeps SQLite's -shm file, and runs only
// the reads that set it up). Reads from memory assume that db's
// connections each have a private cache, SQLite's default: for a pool in
// shared-cache mode, set Config.ReadEveryRequest.
//
// New fails, before it touches db, for an HTTPConfig that cannot be served
// as written (see HTTPConfig.Prefix and HTTPConfig.ContentSecurityPolicy).
func New(ctx context.Context, db *bun.DB, cfg Config) (*Authenticator, error) {
	if db == nil {
		return nil, errors.New("authn: New: db is nil")
	}
	if err := cfg.HTTP.validate(); err != nil {
		return nil, err
	}
	if cfg.SecretKey != nil && len(cfg.SecretKey) != seal.KeySize {
		return nil, fmt.Errorf("authn: Config.SecretKey has %d bytes, not %d", len(cfg.SecretKey), seal.KeySize)
	}
	if cfg.Mailer != nil && cfg.HTTP.BaseURL == "" {
		return nil, errors.New("authn: Config.Mailer is set but HTTPConfig.BaseURL is empty: reset and verification links are built from it (never from a request's Host)")
	}
	recovery, err := newRecoverySettings(cfg.Recovery, cfg.HTTP)
	if err != nil {
		return nil, err
	}
	a := &Authenticator{
		sealKey:   sealKey{key: bytes.Clone(cfg.SecretKey)},
		mailer:    cfg.Mailer,
		recovery:  recovery,
		hasher:    cfg.Hasher,
		threshold: cfg.LockoutThreshold,
		duration:  cfg.LockoutDuration,
		now:       cfg.Now,
		onEvent:   cfg.OnEvent,
		logger:    cfg.Logger,
		policy:    cfg.PasswordPolicy,
	}
	if a.hasher == nil {
		a.hasher = password.Default()
	}
	if a.threshold == 0 {
		a.threshold = 5
	}
	if a.duration <= 0 {
		a.duration = 15 * time.Minute
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.logger == nil {
		a.logger = slog.Default()
	}
	n := cfg.HashConcurrency
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	a.slots = make(chan struct{}, n)
	if cfg.HashSlotsPerClient >= 0 {
		a.perClient = newClientSlots(max(cfg.HashSlotsPerClient, 1))
	}
	a.maxPasswordBytes = max(1024, 4*a.policy.maxLength())
	if limit := password.MaxPasswordBytes(a.hasher); limit > 0 && (a.policy.MaxBytes <= 0 || limit < a.policy.MaxBytes) {
		a.policy.MaxBytes = limit // checked when a password is set, before hashing
	}

	if a.passkeys, err = newPasskeys(cfg.HTTP); err != nil {
		return nil, err
	}
	if a.store, err = newStore(ctx, db, hotread.From(ctx)); err != nil {
		return nil, err
	}
	if !cfg.ReadEveryRequest {
		a.store.useFastReads(ctx, &a.stats.readsSkipped, a.logger)
	}
	// The dummy hash is made with the configured Hasher and parameters, so
	// verifying it costs what verifying a user's current hash costs.
	start := time.Now()
	dummy, err := a.hasher.Hash(rand.Text())
	if err != nil {
		a.store.close(false)
		return nil, fmt.Errorf("authn: making the dummy hash: %w", err)
	}
	a.dummyHash = dummy
	a.failureTiming.observe(time.Since(start)) // a hash costs what its verification does
	a.hashMemory = password.Memory(dummy)
	if mem := cfg.HashMemory; mem >= 0 {
		if mem == 0 {
			mem = int64(n) * max(a.hashMemory, defaultHashMemory)
		}
		a.memory = &weighted{size: mem}
	}
	a.handlers = newHandlers(a, cfg.HTTP)
	a.sessionIdle, a.sessionLifetime = a.handlers.idle, a.handlers.lifetime
	a.maxSessions = a.handlers.maxSessions
	a.rememberFor, a.rememberIdle = a.handlers.rememberFor, a.handlers.rememberIdle
	a.clientPrefix = a.handlers.failures.clientPrefix
	a.bgctx, a.stop = context.WithCancel(context.Background())
	if a.handlers.cleanupEvery > 0 {
		a.every(a.handlers.cleanupEvery, a.cleanSessions)
		if a.passkeys != nil {
			a.every(a.handlers.cleanupEvery, a.cleanChallenges)
		}
	}
	a.every(throttleLogWindow, a.handlers.flushThrottleLog)
	for _, b := range []*budget{a.handlers.failures, a.handlers.registrations, a.handlers.passkeyStarts} {
		a.bg.Go(func() { b.runSweeper(a.bgctx) })
	}
	if a.store.fast != nil {
		a.every(fileCheckInterval, a.store.fast.watch)
	}
	if a.handlers.cleanupEvery > 0 {
		a.every(a.handlers.cleanupEvery, a.cleanRecovery)
	}
	if a.mailer != nil {
		a.mail = &mailQueue{jobs: make(chan mailJob, a.recovery.queueSize)}
		a.bg.Add(1)
		go func() {
			defer a.bg.Done()
			a.runMail(a.bgctx)
		}()
	}
	return a, nil
}

// NewOwned is [New] for a db that the Authenticator takes over: Close
// closes db, as it closes the database of [Open]. db is the Authenticator's
// from the call on, whatever its outcome: when NewOwned fails, it has
// closed db. It suits a pool opened for the Authenticator alone, such as
// the one the postgres package's Open makes; a db the application goes on
// using after Close belongs with New, which never closes it.
func NewOwned(ctx context.Context, db *bun.DB, cfg Config) (*Authenticator, error) {
	a, err := New(ctx, db, cfg)
	if err != nil {
		if db != nil {
			db.Close()
		}
		return nil, err
	}
	a.ownsDB = true
	return a, nil
}

// Close closes the database of Open, NewOwned and the postgres package's
// Open; a *bun.DB given to New stays open. It is safe to call more than
// once.
//
// When Open's watch found the database's -wal file damaged (see Open), or
// finds it so now, Close leaves one connection open, for the life of the
// process, and returns an error that says so: SQLite checkpoints when the
// last connection to a database closes, and that checkpoint would copy the
// damaged -wal over the database file. The process should then end; the
// next start ignores the damaged -wal.
func (a *Authenticator) Close() error {
	a.stop()
	a.bg.Wait()
	err := a.store.close(a.ownsDB)
	if err != nil {
		err = fmt.Errorf("authn: close: %w", err)
	}
	// Last: the file watch's connection may be the database's last one,
	// whose close checkpoints.
	if a.file != nil {
		err = errors.Join(err, a.file.close())
	}
	return err
}

// every runs f every d in a goroutine until Close, which waits for it.
// No request pays for what runs here.
func (a *Authenticator) every(d time.Duration, f func(context.Context)) {
	ctx := a.bgctx
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		tick := time.NewTicker(d)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				f(ctx)
			}
		}
	}()
}

// hashWait bounds how long an operation waits for hashing capacity, a slot
// and hashing memory together, besides its context: the HTTP handlers' one
// HashWait per request (see handlers.newHashWait), and one more for a
// login's claim (see hashWait.again). The Go API passes noWait: only its
// context bounds it.
type hashWait struct {
	d     time.Duration // HashWait, for the error
	until time.Time     // the deadline; zero: none
}

// noWait is the hashWait of the Go API: no bound but the context.
var noWait hashWait

// timer returns a timer that fires at the deadline, or nil when there is
// none; the caller stops it.
func (w hashWait) timer() *time.Timer {
	if w.until.IsZero() {
		return nil
	}
	return time.NewTimer(time.Until(w.until))
}

// acquire takes a hashing slot, or fails with ErrBusy when ctx ends first,
// or when wait passes. A request of an HTTP client first takes one of its
// client's slots (HashSlotsPerClient), within the same bound, so that its
// waiting requests hold no slot anyone else could use. The caller must call
// release with the same ctx.
func (a *Authenticator) acquire(ctx context.Context, wait hashWait) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrBusy, err)
	}
	// One HashWait bounds both waits. The timer is made at the first wait
	// that blocks: the common case has none.
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	var timeout <-chan time.Time
	take := func(slots chan struct{}) error {
		select {
		case slots <- struct{}{}:
			return nil
		default:
		}
		if timer == nil {
			if timer = wait.timer(); timer != nil {
				timeout = timer.C
			}
		}
		select {
		case slots <- struct{}{}:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrBusy, context.Cause(ctx))
		case <-timeout:
			return fmt.Errorf("%w: no slot within %v", ErrBusy, wait.d)
		}
	}
	key, perClient := a.clientKey(ctx)
	if perClient {
		if err := take(a.perClient.ref(key)); err != nil {
			a.perClient.unref(key)
			return err
		}
	}
	if err := take(a.slots); err != nil {
		if perClient {
			a.perClient.release(key)
		}
		return err
	}
	return nil
}

// release gives back the slots acquire took for ctx.
func (a *Authenticator) release(ctx context.Context) {
	<-a.slots
	if key, ok := a.clientKey(ctx); ok {
		a.perClient.release(key)
	}
}

// clientKey is the client whose slots a request counts against: the
// network of its address, as the throttle counts it. ok is false outside
// the HTTP handlers, or with no bound per client.
func (a *Authenticator) clientKey(ctx context.Context) (netip.Prefix, bool) {
	ip, ok := middleware.ClientIPFromContext(ctx)
	if !ok || !ip.IsValid() || a.perClient == nil {
		return netip.Prefix{}, false
	}
	return a.clientPrefix(ip), true
}

// clientSlots holds the hashing slots of the clients with requests in
// hashing or waiting for it: an entry lives while a request refers to it,
// so the memory is bounded by the requests in flight.
type clientSlots struct {
	per int

	mu      sync.Mutex
	clients map[netip.Prefix]*clientSlot
}

type clientSlot struct {
	slots chan struct{}
	refs  int
}

func newClientSlots(per int) *clientSlots {
	return &clientSlots{per: per, clients: make(map[netip.Prefix]*clientSlot)}
}

// ref returns key's slots and takes a reference to them, which unref or
// release drops.
func (c *clientSlots) ref(key netip.Prefix) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.clients[key]
	if e == nil {
		e = &clientSlot{slots: make(chan struct{}, c.per)}
		c.clients[key] = e
	}
	e.refs++
	return e.slots
}

func (c *clientSlots) unref(key netip.Prefix) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.clients[key]; e != nil {
		if e.refs--; e.refs == 0 {
			delete(c.clients, key)
		}
	}
}

// release gives back a slot taken from ref's channel, and the reference.
func (c *clientSlots) release(key netip.Prefix) {
	c.mu.Lock()
	e := c.clients[key]
	c.mu.Unlock()
	<-e.slots // ours: the entry lives while we hold a reference
	c.unref(key)
}

// hash hashes a new password within a slot, waiting for it within wait.
func (a *Authenticator) hash(ctx context.Context, pw string, wait hashWait) (string, error) {
	if err := a.acquire(ctx, wait); err != nil {
		return "", err
	}
	defer a.release(ctx)
	return a.hashNow(ctx, pw, wait)
}

// hashNow hashes a new password in the caller's slot, within the memory
// budget, waiting for memory within wait. A Hasher's refusal of the
// password for its length is ErrInvalidPassword.
func (a *Authenticator) hashNow(ctx context.Context, pw string, wait hashWait) (string, error) {
	encoded, err := a.hashWithin(ctx, pw, wait)
	switch {
	case errors.Is(err, ErrBusy):
		return "", err
	case errors.Is(err, password.ErrPasswordTooLong):
		// The password's fault (a Hasher that did not declare its limit
		// up front): a rejected password, not an outage.
		return "", fmt.Errorf("%w: %w", ErrInvalidPassword, err)
	case err != nil:
		return "", fmt.Errorf("authn: hashing: %w", err)
	}
	return encoded, nil
}

// unixSeconds is how times are stored: Unix seconds as a float, the Python
// application's time.time().
func unixSeconds(t time.Time) float64 { return float64(t.UnixMicro()) / 1e6 }

// The stored lock times that are times: from the start of year 0 to the end
// of year 9999, the range of RFC 3339 (and of time.Time's MarshalJSON).
// Untyped, they would be an int in fmt's arguments, which they overflow on
// 32-bit platforms: the SQL that embeds them passes them as int64.
const (
	minLockSeconds = -62167219200 // 0000-01-01T00:00:00Z
	maxLockSeconds = 253402300800 // 10000-01-01T00:00:00Z, excluded
)

// lockedForever is the LockedUntil of an account locked with no end: the
// last second of year 9999, so that a caller comparing times sees the lock.
var lockedForever = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// lockTime reads a stored lockout_until, the inverse of unixSeconds to the
// microsecond. A value that is no finite time in range (+Inf, NaN, 1e300,
// -Inf: how an administrator of the Python application may disable an
// account) is a lock with no end, until the value is changed: forever is
// true and t is lockedForever. Converting such a value as a number would
// overflow into a time long past, which unlocks.
func lockTime(s float64) (t time.Time, forever bool) {
	if !(s >= minLockSeconds && s < maxLockSeconds) { // NaN fails both
		return lockedForever, true
	}
	return time.UnixMicro(int64(math.Round(s * 1e6))), false // round: most decimals are not exact in binary
}

// lockedAt reports whether a stored lockout_until locks an account at now.
func lockedAt(s float64, now time.Time) bool {
	t, forever := lockTime(s)
	return forever || t.After(now)
}
