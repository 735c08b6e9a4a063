// The sequential specification of Distri's string keys, as Porcupine wants it, and the
// reader of the histories the fault suite records (tests/faults/workload.py writes them).
//
// One history line is one operation of one client:
//
//	{"client": 3, "op": "cas", "key": "k4", "args": ["v-3-17", "v-3-18"],
//	 "output": 1, "call": 1234, "return": 5678, "unknown": false, "error": ""}
//
// op is get, set, cas or incr; args are the command's arguments after the key (SET: the
// value; CAS: expected and new, or only new for "set if absent"; GET and INCR: none).
// output is what the server answered: GET the value or null, SET "OK", CAS 0 or 1, INCR
// the new integer. call and return are monotonic nanoseconds of one clock.
//
// unknown marks an operation that may or may not have taken effect (a timeout, a dropped
// connection, an UNKNOWN reply). Such an operation is kept, with its return moved to the
// end of the history and any output accepted: the checker may place it anywhere after its
// call, including after everything else, which is the same as "never happened" (the
// treatment of Knossos and Porcupine). An operation with an error and unknown=false was
// certainly not applied (IOERR, a refused write) and is dropped, as is every failed read:
// a read that returned nothing constrains nothing.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/anishathalye/porcupine"
)

// Record is one line of a history file.
type Record struct {
	Client  int             `json:"client"`
	Op      string          `json:"op"`
	Key     string          `json:"key"`
	Args    []string        `json:"args"`
	Output  json.RawMessage `json:"output"`
	Call    int64           `json:"call"`
	Return  int64           `json:"return"`
	Unknown bool            `json:"unknown"`
	Error   string          `json:"error"`
}

// Input is what a Porcupine operation carries as its input.
type Input struct {
	Op   string
	Args []string
}

// Output is what a completed operation returned. Unknown outputs match any result.
type Output struct {
	Unknown bool
	Present bool   // get: the key existed
	Value   string // get: the value
	Int     int64  // cas: 0 or 1; incr: the new value
}

// State is the value of one key; keys are checked one at a time (Porcupine's partitions
// are exactly "one key", so a state needs no map).
type State struct {
	Present bool
	Value   string
}

// Step applies one operation to a state and says whether the output is possible.
func Step(state interface{}, input interface{}, output interface{}) (bool, interface{}) {
	s := state.(State)
	in := input.(Input)
	out := output.(Output)
	switch in.Op {
	case "get":
		if out.Unknown {
			return true, s
		}
		return out.Present == s.Present && (!s.Present || out.Value == s.Value), s
	case "set":
		return true, State{Present: true, Value: in.Args[0]}
	case "cas":
		var swap bool
		var next string
		if len(in.Args) == 1 {
			swap, next = !s.Present, in.Args[0]
		} else {
			swap, next = s.Present && s.Value == in.Args[0], in.Args[1]
		}
		if !out.Unknown && (out.Int == 1) != swap {
			return false, s
		}
		if swap {
			return true, State{Present: true, Value: next}
		}
		return true, s
	case "incr":
		var n int64
		if s.Present {
			v, err := strconv.ParseInt(s.Value, 10, 64)
			if err != nil {
				// INCR on a non-integer fails and changes nothing; a success is impossible.
				return out.Unknown, s
			}
			n = v
		}
		n++
		if !out.Unknown && out.Int != n {
			return false, s
		}
		return true, State{Present: true, Value: strconv.FormatInt(n, 10)}
	}
	return false, s
}

// KeyModel is the per-key model; the partitioning is done by the caller (CheckHistory).
var KeyModel = porcupine.Model{
	Init: func() interface{} { return State{} },
	Step: Step,
	Equal: func(a, b interface{}) bool {
		return a.(State) == b.(State)
	},
	DescribeOperation: func(input interface{}, output interface{}) string {
		in := input.(Input)
		out := output.(Output)
		result := "?"
		if !out.Unknown {
			switch in.Op {
			case "get":
				result = "nil"
				if out.Present {
					result = strconv.Quote(out.Value)
				}
			case "set":
				result = "OK"
			default:
				result = strconv.FormatInt(out.Int, 10)
			}
		}
		return fmt.Sprintf("%s%q -> %s", in.Op, in.Args, result)
	},
	DescribeState: func(state interface{}) string {
		s := state.(State)
		if !s.Present {
			return "nil"
		}
		return strconv.Quote(s.Value)
	},
}

// ParseHistory reads JSON lines into per-key operations. It returns the operations by key
// (in file order), how many were unknown, and how many were dropped (failed reads and
// certainly-failed writes).
func ParseHistory(r io.Reader) (map[string][]porcupine.Operation, int, int, error) {
	byKey := map[string][]porcupine.Operation{}
	unknown, dropped := 0, 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024) // one line is one operation: bounded
	line := 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, 0, 0, fmt.Errorf("line %d: %v", line, err)
		}
		op, keep, err := toOperation(rec)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("line %d: %v", line, err)
		}
		if !keep {
			dropped++
			continue
		}
		if op.Output.(Output).Unknown {
			unknown++
		}
		byKey[rec.Key] = append(byKey[rec.Key], op)
	}
	if err := sc.Err(); err != nil {
		return nil, 0, 0, fmt.Errorf("line %d: %v", line+1, err)
	}
	return byKey, unknown, dropped, nil
}

func toOperation(rec Record) (porcupine.Operation, bool, error) {
	wantArgs := map[string][2]int{"get": {0, 0}, "set": {1, 1}, "cas": {1, 2}, "incr": {0, 0}}
	bounds, ok := wantArgs[rec.Op]
	if !ok {
		return porcupine.Operation{}, false, fmt.Errorf("unknown op %q", rec.Op)
	}
	if len(rec.Args) < bounds[0] || len(rec.Args) > bounds[1] {
		return porcupine.Operation{}, false, fmt.Errorf("%s takes %d..%d args, got %d", rec.Op,
			bounds[0], bounds[1], len(rec.Args))
	}
	if rec.Return < rec.Call {
		return porcupine.Operation{}, false, fmt.Errorf("return %d before call %d", rec.Return,
			rec.Call)
	}
	if rec.Op == "get" && (rec.Unknown || rec.Error != "") {
		return porcupine.Operation{}, false, nil // a failed read constrains nothing
	}
	if rec.Error != "" && !rec.Unknown {
		return porcupine.Operation{}, false, nil // certainly not applied
	}
	op := porcupine.Operation{ClientId: rec.Client, Input: Input{Op: rec.Op, Args: rec.Args},
		Call: rec.Call, Return: rec.Return}
	if rec.Unknown {
		// Pending until the end of the history: it may take effect at any later time.
		op.Return = math.MaxInt64
		op.Output = Output{Unknown: true}
		return op, true, nil
	}
	out, err := parseOutput(rec.Op, rec.Output)
	if err != nil {
		return porcupine.Operation{}, false, err
	}
	op.Output = out
	return op, true, nil
}

func parseOutput(op string, raw json.RawMessage) (Output, error) {
	switch op {
	case "get":
		if len(raw) == 0 || string(raw) == "null" {
			return Output{}, nil
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return Output{}, fmt.Errorf("get output: %v", err)
		}
		return Output{Present: true, Value: v}, nil
	case "set":
		var v string
		if err := json.Unmarshal(raw, &v); err != nil || v != "OK" {
			return Output{}, fmt.Errorf("set output %s is not \"OK\"", raw)
		}
		return Output{}, nil
	default:
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil {
			return Output{}, fmt.Errorf("%s output: %v", op, err)
		}
		if op == "cas" && n != 0 && n != 1 {
			return Output{}, fmt.Errorf("cas output %d is not 0 or 1", n)
		}
		return Output{Int: n}, nil
	}
}
