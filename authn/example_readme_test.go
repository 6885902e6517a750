package authn_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"go/types"
	"log"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minimost/minimost/authn"
)

// Example_server is a complete program: users in a SQLite file, a first
// user, Basic auth around one handler, and a login session around
// another. The first Go block of README.md is this function's body as
// "func main" (TestReadmeSnippet fails when they differ). It has no Output
// comment, so go test compiles it and does not run it: it would serve
// forever.
func Example_server() {
	ctx := context.Background()
	cfg := authn.Config{HTTP: authn.HTTPConfig{
		Prefix:         "/auth", // where Routes serves its pages
		AfterLoginPath: "/app/", // where a login lands
	}}
	a, err := authn.Open(ctx, "auth.db", cfg) // embedded SQLite, created if missing, WAL mode
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()

	// The first user, from the environment here; or from a shell, with a prompt:
	//   go run ./examples/authctl -db auth.db add alice   (in a clone of this repository)
	if pw := os.Getenv("ALICE_PASSWORD"); pw != "" {
		err := a.Register(ctx, "alice", pw)
		if err != nil && !errors.Is(err, authn.ErrUserExists) {
			log.Print(err) // such as the password policy: 15 characters at least
			return
		}
	}

	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := authn.Username(r.Context()) // who is signed in
		fmt.Fprintf(w, "Hello, %s\n", user)
	})
	mux := http.NewServeMux()
	mux.Handle("/admin/", a.BasicAuth(app))    // wrap an existing handler
	mux.Handle("/auth/", a.Routes())           // /auth/login, /logout, /password, /sessions
	mux.Handle("/app/", a.RequireSession(app)) // pages behind the login session, else to /auth/login
	srv := &http.Server{Addr: "localhost:8080", Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	log.Print(srv.ListenAndServe()) // plain HTTP on localhost only; elsewhere HTTPS (the cookie is Secure)
}

// TestReadmeSnippet keeps README.md's first Go block honest: it must be a
// gofmt-formatted program whose func main has the same lines as
// Example_server's body (indentation aside), and whose imports are exactly
// the packages that body uses, with the Example file's paths. The Example
// compiling then means the snippet compiles as copied.
func TestReadmeSnippet(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	snippet, err := firstGoBlock(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	if formatted, err := format.Source([]byte(snippet)); err != nil {
		t.Fatalf("README's first Go block does not parse: %v", err)
	} else if string(formatted) != snippet {
		t.Errorf("README's first Go block is not gofmt-formatted; gofmt makes it:\n%s", formatted)
	}
	fset := token.NewFileSet()
	readmeFile, err := parser.ParseFile(fset, "README.md", snippet, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	exampleSrc, err := os.ReadFile("example_readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	exampleFile, err := parser.ParseFile(fset, "example_readme_test.go", exampleSrc, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	if readmeFile.Name.Name != "main" {
		t.Errorf("README's first Go block is package %s, want main", readmeFile.Name.Name)
	}
	readmeMain, exampleFunc := findFunc(readmeFile, "main"), findFunc(exampleFile, "Example_server")
	if readmeMain == nil || exampleFunc == nil {
		t.Fatalf("func main in README: %v; Example_server in example_readme_test.go: %v", readmeMain != nil, exampleFunc != nil)
	}
	if diff := diffLines(bodyLines(fset, []byte(snippet), readmeMain), bodyLines(fset, exampleSrc, exampleFunc)); diff != "" {
		t.Errorf("README's func main and Example_server differ (README first):\n%s", diff)
	}
	checkImports(t, readmeFile, exampleFile)
}

// firstGoBlock returns the text of the first ```go fenced block of md.
func firstGoBlock(md string) (string, error) {
	_, rest, ok := strings.Cut(md, "\n```go\n")
	if !ok {
		return "", errors.New("README.md has no ```go block")
	}
	block, _, ok := strings.Cut(rest, "\n```\n")
	if !ok {
		return "", errors.New("README.md's first ```go block does not end")
	}
	return block + "\n", nil
}

func findFunc(f *ast.File, name string) *ast.FuncDecl {
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && fn.Name.Name == name {
			return fn
		}
	}
	return nil
}

// bodyLines returns the lines between fn's braces as written, without
// their indentation, and without blank lines at either end.
func bodyLines(fset *token.FileSet, src []byte, fn *ast.FuncDecl) []string {
	from, to := fset.Position(fn.Body.Lbrace).Offset+1, fset.Position(fn.Body.Rbrace).Offset
	var lines []string
	for line := range strings.SplitSeq(string(src[from:to]), "\n") {
		lines = append(lines, strings.TrimLeft(line, " \t"))
	}
	for len(lines) > 0 && lines[0] == "" {
		lines = lines[1:]
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// diffLines returns "" when a and b are equal, else the first lines where
// they differ.
func diffLines(a, b []string) string {
	var out bytes.Buffer
	for i := 0; i < max(len(a), len(b)) && out.Len() < 2000; i++ {
		var la, lb string
		if i < len(a) {
			la = a[i]
		}
		if i < len(b) {
			lb = b[i]
		}
		if la != lb || (i >= len(a)) != (i >= len(b)) {
			fmt.Fprintf(&out, "line %d:\n  README:  %q\n  Example: %q\n", i+1, la, lb)
		}
	}
	return out.String()
}

// checkImports: every identifier the README program leaves unresolved is
// a predeclared one or one of its imports, every import is used, and each
// is imported by the Example file under the same name and path.
func checkImports(t *testing.T, readme, example *ast.File) {
	t.Helper()
	imported := map[string]string{} // name -> path
	for _, f := range []*ast.File{readme, example} {
		for _, spec := range f.Imports {
			path, _ := strconv.Unquote(spec.Path.Value)
			name := path[strings.LastIndex(path, "/")+1:]
			if spec.Name != nil {
				name = spec.Name.Name
			}
			if f == readme {
				imported[name] = path
			} else if want, ok := imported[name]; ok && want != path {
				t.Errorf("README imports %s as %q, the Example file %q", name, want, path)
			}
		}
	}
	used := map[string]bool{}
	for _, id := range readme.Unresolved {
		if _, ok := imported[id.Name]; ok {
			used[id.Name] = true
		} else if types.Universe.Lookup(id.Name) == nil {
			t.Errorf("README's Go block uses %s, which it neither declares nor imports", id.Name)
		}
	}
	var exampleImports []string
	for _, spec := range example.Imports {
		path, _ := strconv.Unquote(spec.Path.Value)
		exampleImports = append(exampleImports, path)
	}
	for name, path := range imported {
		if !used[name] {
			t.Errorf("README's Go block imports %q but does not use it", path)
		}
		if !slices.Contains(exampleImports, path) {
			t.Errorf("README's Go block imports %q, the Example file does not", path)
		}
	}
}
