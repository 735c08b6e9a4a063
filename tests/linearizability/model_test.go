// Tiny hand-made histories the checker must accept or reject: if the model were too
// lenient (a stale read passes) or too strict (an unknown write that did apply fails), the
// fault suite's verdict would mean nothing.
package main

import (
	"strings"
	"testing"
)

func check(t *testing.T, history string) Summary {
	t.Helper()
	byKey, _, dropped, err := ParseHistory(strings.NewReader(history))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	s, err := CheckHistory(byKey, 0, "")
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	s.Dropped = dropped
	return s
}

func TestLinearizableHistories(t *testing.T) {
	cases := map[string]string{
		"sequential set then get": `
{"client":0,"op":"set","key":"a","args":["v1"],"output":"OK","call":0,"return":10}
{"client":1,"op":"get","key":"a","output":"v1","call":20,"return":30}`,
		"read concurrent with a write sees the old value": `
{"client":0,"op":"set","key":"a","args":["v1"],"output":"OK","call":0,"return":10}
{"client":0,"op":"set","key":"a","args":["v2"],"output":"OK","call":20,"return":50}
{"client":1,"op":"get","key":"a","output":"v1","call":30,"return":40}`,
		"read concurrent with a write sees the new value": `
{"client":0,"op":"set","key":"a","args":["v1"],"output":"OK","call":0,"return":10}
{"client":0,"op":"set","key":"a","args":["v2"],"output":"OK","call":20,"return":50}
{"client":1,"op":"get","key":"a","output":"v2","call":30,"return":40}`,
		"a missing key reads as null": `
{"client":1,"op":"get","key":"a","output":null,"call":0,"return":1}`,
		"an unknown write that applied": `
{"client":0,"op":"set","key":"a","args":["v1"],"call":0,"return":10,"unknown":true,"error":"UNKNOWN"}
{"client":1,"op":"get","key":"a","output":"v1","call":100,"return":110}`,
		"an unknown write that applied late": `
{"client":0,"op":"set","key":"a","args":["v1"],"call":0,"return":10,"unknown":true,"error":"timeout"}
{"client":1,"op":"get","key":"a","output":null,"call":20,"return":30}
{"client":1,"op":"get","key":"a","output":"v1","call":40,"return":50}`,
		"an unknown write that never applied": `
{"client":0,"op":"set","key":"a","args":["v1"],"call":0,"return":10,"unknown":true,"error":"reset"}
{"client":1,"op":"get","key":"a","output":null,"call":100,"return":110}`,
		"a failed read is dropped": `
{"client":0,"op":"set","key":"a","args":["v1"],"output":"OK","call":0,"return":10}
{"client":1,"op":"get","key":"a","output":"garbage","call":20,"return":30,"error":"TRYAGAIN"}`,
		"cas: set if absent, then compare and swap, then a failed swap": `
{"client":0,"op":"cas","key":"a","args":["v1"],"output":1,"call":0,"return":10}
{"client":1,"op":"cas","key":"a","args":["v1","v2"],"output":1,"call":20,"return":30}
{"client":0,"op":"cas","key":"a","args":["v1","v3"],"output":0,"call":40,"return":50}
{"client":1,"op":"get","key":"a","output":"v2","call":60,"return":70}`,
		"two concurrent cas, one wins": `
{"client":0,"op":"set","key":"a","args":["x"],"output":"OK","call":0,"return":10}
{"client":1,"op":"cas","key":"a","args":["x","y"],"output":1,"call":20,"return":40}
{"client":2,"op":"cas","key":"a","args":["x","z"],"output":0,"call":20,"return":40}`,
		"incr counts, with an unknown one in between": `
{"client":0,"op":"incr","key":"c","output":1,"call":0,"return":10}
{"client":0,"op":"incr","key":"c","call":20,"return":30,"unknown":true}
{"client":0,"op":"incr","key":"c","output":3,"call":40,"return":50}
{"client":1,"op":"get","key":"c","output":"3","call":60,"return":70}`,
		"keys are independent": `
{"client":0,"op":"set","key":"a","args":["v1"],"output":"OK","call":0,"return":10}
{"client":1,"op":"get","key":"b","output":null,"call":20,"return":30}`,
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			if s := check(t, h); !s.Linearizable || s.TimedOut {
				t.Fatalf("want linearizable, got %+v", s)
			}
		})
	}
}

func TestNonLinearizableHistories(t *testing.T) {
	cases := map[string]string{
		"stale read": `
{"client":0,"op":"set","key":"a","args":["v1"],"output":"OK","call":0,"return":10}
{"client":0,"op":"set","key":"a","args":["v2"],"output":"OK","call":20,"return":30}
{"client":1,"op":"get","key":"a","output":"v1","call":40,"return":50}`,
		"lost write": `
{"client":0,"op":"set","key":"a","args":["v1"],"output":"OK","call":0,"return":10}
{"client":1,"op":"get","key":"a","output":null,"call":20,"return":30}`,
		"cas succeeded twice": `
{"client":0,"op":"set","key":"a","args":["x"],"output":"OK","call":0,"return":10}
{"client":1,"op":"cas","key":"a","args":["x","y"],"output":1,"call":20,"return":40}
{"client":2,"op":"cas","key":"a","args":["x","z"],"output":1,"call":20,"return":40}`,
		"cas if absent succeeded twice": `
{"client":1,"op":"cas","key":"a","args":["y"],"output":1,"call":0,"return":40}
{"client":2,"op":"cas","key":"a","args":["z"],"output":1,"call":0,"return":40}`,
		"incr returned the same value twice": `
{"client":0,"op":"incr","key":"c","output":1,"call":0,"return":10}
{"client":1,"op":"incr","key":"c","output":1,"call":20,"return":30}`,
		"a write that certainly failed was applied": `
{"client":0,"op":"set","key":"a","args":["v1"],"call":0,"return":10,"error":"IOERR write not applied"}
{"client":1,"op":"get","key":"a","output":"v1","call":20,"return":30}`,
		"a value that was never written": `
{"client":1,"op":"get","key":"a","output":"ghost","call":0,"return":10}`,
		"reads go backwards": `
{"client":0,"op":"set","key":"a","args":["v1"],"output":"OK","call":0,"return":10}
{"client":0,"op":"set","key":"a","args":["v2"],"output":"OK","call":20,"return":100}
{"client":1,"op":"get","key":"a","output":"v2","call":30,"return":40}
{"client":2,"op":"get","key":"a","output":"v1","call":50,"return":60}`,
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			if s := check(t, h); s.Linearizable {
				t.Fatalf("want a violation, got %+v", s)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	for name, h := range map[string]string{
		"not json":           `{"client":0,`,
		"unknown op":         `{"client":0,"op":"del","key":"a","call":0,"return":1}`,
		"set without value":  `{"client":0,"op":"set","key":"a","output":"OK","call":0,"return":1}`,
		"return before call": `{"client":0,"op":"get","key":"a","output":null,"call":5,"return":1}`,
		"cas output 2":       `{"client":0,"op":"cas","key":"a","args":["x"],"output":2,"call":0,"return":1}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, _, err := ParseHistory(strings.NewReader(h)); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

func TestCountsAndHTML(t *testing.T) {
	h := `
{"client":0,"op":"set","key":"a","args":["v1"],"output":"OK","call":0,"return":10}
{"client":0,"op":"set","key":"a","args":["v2"],"call":20,"return":30,"unknown":true}
{"client":1,"op":"get","key":"a","call":20,"return":30,"error":"timeout","unknown":true}
{"client":1,"op":"get","key":"b/x","output":"nope","call":40,"return":50}`
	byKey, unknown, dropped, err := ParseHistory(strings.NewReader(h))
	if err != nil {
		t.Fatal(err)
	}
	if unknown != 1 || dropped != 1 {
		t.Fatalf("unknown=%d dropped=%d, want 1 and 1", unknown, dropped)
	}
	dir := t.TempDir()
	s, err := CheckHistory(byKey, 0, dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Ops != 3 || s.Linearizable || s.Keys["a"].Result != "Ok" || s.Keys["b/x"].Result != "Illegal" {
		t.Fatalf("summary %+v", s)
	}
	if !strings.HasSuffix(s.Keys["b/x"].HTML, "/b_x.html") {
		t.Fatalf("html path %q", s.Keys["b/x"].HTML)
	}
}
