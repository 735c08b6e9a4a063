// linearizability checks a history recorded by the fault suite (tests/test_cluster_faults.py)
// with Porcupine, one key at a time, and prints a JSON summary:
//
//	linearizability [-timeout 60s] [-html-dir DIR] history.jsonl   (or - for stdin)
//
//	{"ops": 5120, "unknown": 31, "dropped": 12, "linearizable": true,
//	 "keys": {"k0": {"ops": 512, "unknown": 3, "result": "Ok"}, ...}}
//
// Exit status: 0 linearizable, 1 not linearizable (some key is Illegal), 2 the check timed
// out on some key without finding a violation, 3 bad input. With -html-dir, each key that
// is not linearizable gets Porcupine's visualisation in DIR/<key>.html: the longest
// linearizable prefixes and the operation none of them can be extended with.
//
// The history format and the model are in model.go.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// KeyResult is the verdict for one key.
type KeyResult struct {
	Ops     int    `json:"ops"`
	Unknown int    `json:"unknown"`
	Result  string `json:"result"` // Ok, Illegal or Unknown (timed out)
	HTML    string `json:"html,omitempty"`
}

// Summary is what the program prints.
type Summary struct {
	Ops          int                  `json:"ops"`
	Unknown      int                  `json:"unknown"`
	Dropped      int                  `json:"dropped"`
	Linearizable bool                 `json:"linearizable"`
	TimedOut     bool                 `json:"timed_out"`
	Keys         map[string]KeyResult `json:"keys"`
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// CheckHistory checks every key's operations; timeout bounds each key's search (0: none).
func CheckHistory(byKey map[string][]porcupine.Operation, timeout time.Duration,
	htmlDir string) (Summary, error) {
	s := Summary{Linearizable: true, Keys: map[string]KeyResult{}}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ops := byKey[k]
		kr := KeyResult{Ops: len(ops)}
		for _, op := range ops {
			if op.Output.(Output).Unknown {
				kr.Unknown++
			}
		}
		s.Ops += kr.Ops
		s.Unknown += kr.Unknown
		// The verbose check keeps every partial linearization (gigabytes for a long run):
		// only a key already known to fail is checked again with it, for the picture.
		res := porcupine.CheckOperationsTimeout(KeyModel, ops, timeout)
		if res == porcupine.Illegal && htmlDir != "" {
			_, info := porcupine.CheckOperationsVerbose(KeyModel, ops, timeout)
			kr.HTML = filepath.Join(htmlDir, unsafeFileChars.ReplaceAllString(k, "_")+".html")
			if err := porcupine.VisualizePath(KeyModel, info, kr.HTML); err != nil {
				return s, fmt.Errorf("writing %s: %v", kr.HTML, err)
			}
		}
		kr.Result = string(res)
		switch res {
		case porcupine.Illegal:
			s.Linearizable = false
		case porcupine.Unknown:
			s.TimedOut = true
		}
		s.Keys[k] = kr
	}
	return s, nil
}

func main() {
	timeout := flag.Duration("timeout", 120*time.Second, "bound on each key's search (0: none)")
	htmlDir := flag.String("html-dir", "", "write a visualisation of each failing key here")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: linearizability [-timeout D] [-html-dir DIR] history.jsonl|-\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(3)
	}
	var in io.Reader = os.Stdin
	if path := flag.Arg(0); path != "-" {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		defer f.Close()
		in = f
	}
	byKey, unknown, dropped, err := ParseHistory(in)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bad history: %v\n", err)
		os.Exit(3)
	}
	if *htmlDir != "" {
		if err := os.MkdirAll(*htmlDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
	}
	s, err := CheckHistory(byKey, *timeout, *htmlDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	s.Dropped = dropped
	if s.Unknown != unknown {
		panic("unknown operations miscounted") // both count the same records
	}
	out, _ := json.Marshal(s)
	fmt.Println(string(out))
	switch {
	case !s.Linearizable:
		os.Exit(1)
	case s.TimedOut:
		os.Exit(2)
	}
}
