package postgres

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// fakeServer is a PostgreSQL server of the test's own on loopback: it
// takes any startup without a password, prepares any statement as one text
// column, and answers each round trip of reads (Bind, Execute, …, Sync)
// with answer. It checks that the reader fails closed on answers a real
// server does not give.
func fakeServer(t *testing.T, answer func(be *pgproto3.Backend, executes int)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go serveFake(conn, answer)
		}
	}()
	return "postgres://fake@" + l.Addr().String() + "/fake?sslmode=disable"
}

func serveFake(conn net.Conn, answer func(be *pgproto3.Backend, executes int)) {
	defer conn.Close()
	be := pgproto3.NewBackend(conn, conn)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	prepared, executes := false, 0
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		switch msg.(type) {
		case *pgproto3.Parse:
			prepared = true
		case *pgproto3.Execute:
			executes++
		case *pgproto3.Sync:
			if prepared {
				be.Send(&pgproto3.ParseComplete{})
				be.Send(&pgproto3.ParameterDescription{ParameterOIDs: []uint32{25}})
				be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("v"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}})
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			} else {
				answer(be, executes)
			}
			prepared, executes = false, 0
			if be.Flush() != nil {
				return
			}
		case *pgproto3.Terminate:
			return
		}
	}
}

// TestReaderFakeAnswers: a round trip the server answers short, or with
// rows of the wrong shape, fails its reads: none is left without an error
// and with its destination unwritten. (More rows than one are not a
// failure: a read takes the first, as database/sql's Row.Scan does.)
func TestReaderFakeAnswers(t *testing.T) {
	for name, answer := range map[string]func(*pgproto3.Backend, int){
		"no results": func(be *pgproto3.Backend, _ int) {
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		},
		"two columns": func(be *pgproto3.Backend, executes int) {
			for range executes {
				be.Send(&pgproto3.BindComplete{})
				be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("a"), []byte("b")}})
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
			}
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		},
		"a row without its result": func(be *pgproto3.Backend, _ int) {
			be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("stray")}})
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := openReader(t, fakeServer(t, answer), 1, 5*time.Second)
			v := "untouched"
			err := r.Read(context.Background(), "SELECT v FROM kv WHERE k = $1", "k1", &v)
			if err == nil || errors.Is(err, sql.ErrNoRows) {
				t.Fatalf("read answered %q, %v: want an error", v, err)
			}
		})
	}
}
