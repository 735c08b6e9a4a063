// Tests of the load generator's RESP reader: the reply shapes CLUSTER.INFO and SET come
// back in (RESP2 and RESP3), error replies, and the size bound. `go test` in bench/loadgen.

package main

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

func parse(t *testing.T, wire string) (any, error) {
	t.Helper()
	budget := maxReplyBytes
	return readValue(bufio.NewReader(strings.NewReader(wire)), &budget)
}

func TestClusterInfoAsResp3MapAndResp2Array(t *testing.T) {
	resp3 := "%3\r\n$4\r\nrole\r\n$6\r\nleader\r\n$4\r\nterm\r\n:7\r\n" +
		"$6\r\nvoters\r\n*2\r\n:11\r\n:12\r\n"
	resp2 := "*6\r\n$4\r\nrole\r\n$6\r\nleader\r\n$4\r\nterm\r\n:7\r\n" +
		"$6\r\nvoters\r\n*2\r\n:11\r\n:12\r\n"
	for _, wire := range []string{resp3, resp2} {
		v, err := parse(t, wire)
		if err != nil {
			t.Fatal(err)
		}
		m, err := asMap(v)
		if err != nil {
			t.Fatal(err)
		}
		if m["role"] != "leader" || toInt(m["term"]) != 7 {
			t.Errorf("got %v", m)
		}
		if got := toStrings(m["voters"]); len(got) != 2 || got[0] != "11" {
			t.Errorf("voters %v", got)
		}
	}
}

func TestErrorReplyIsAnErrorReply(t *testing.T) {
	_, err := parse(t, "-TRYAGAIN no leader is known\r\n")
	var reply *ErrorReply
	if !errors.As(err, &reply) || reply.Msg != "TRYAGAIN no leader is known" {
		t.Fatalf("got %v", err)
	}
}

func TestBulkLargerThanTheBoundIsRefused(t *testing.T) {
	if _, err := parse(t, "$2000000\r\n"); err == nil {
		t.Fatal("a 2 MB bulk was accepted")
	}
}

func TestMalformedLineIsRefused(t *testing.T) {
	if _, err := parse(t, "+OK\n"); err == nil {
		t.Fatal("a line without CR was accepted")
	}
}

func TestAppendCommand(t *testing.T) {
	got := string(appendCommand(nil, []byte("SET"), []byte("k"), []byte("vv")))
	if want := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nvv\r\n"; got != want {
		t.Fatalf("got %q", got)
	}
}
